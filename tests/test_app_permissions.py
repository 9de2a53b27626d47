"""app.yml asks for exactly the permissions Tarmac's GitHub calls and events need: no more (an
organisation's admin reads them at install time), no less (a call would be refused).

The calls are bot/github/endpoints.py's endpoints, each naming the permission it needs, and any
`….call("METHOD", "/path", …)` still written out under bot/. Each must be in REST_PERMISSIONS
below, which is the table GitHub publishes per endpoint ("Permissions required for GitHub
Apps", under docs.github.com/en/rest/authentication), and in GitHub's REST description as an
operation GitHub Apps may use; a new call fails this test until its permission is written down.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

from bot.github.endpoints import ENDPOINTS
from tests.github_material import rest_description

ROOT = Path(__file__).parents[1]
LEVELS = {"read": 1, "write": 2}

# (method, path template) → (permission, level). Calls made as the App itself (a JWT,
# `installation_id=None`) need no installation permission and are left out by the scan.
REST_PERMISSIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/repos/{owner}/{repo}"): ("metadata", "read"),
    ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission"): ("metadata", "read"),
    # An organisation permission ("Organization permissions for "Members""): who approves.
    ("GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}"): ("members", "read"),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"): ("contents", "read"),
    ("GET", "/repos/{owner}/{repo}/git/tags/{tag_sha}"): ("contents", "read"),
    ("POST", "/repos/{owner}/{repo}/deployments"): ("deployments", "write"),
    ("GET", "/repos/{owner}/{repo}/deployments{?sha,environment}"): ("deployments", "read"),
    ("POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"): (
        "deployments",
        "write",
    ),
    ("GET", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses"): (
        "deployments",
        "read",
    ),
    ("POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches"): (
        "actions",
        "write",
    ),
    (
        "GET",
        "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs"
        "{?event,created,per_page,exclude_pull_requests}",
    ): ("actions", "read"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}"): ("actions", "read"),
    ("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel"): ("actions", "write"),
    # "Repository permissions for Deployments" lists it (server-to-server only).
    ("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule"): (
        "deployments",
        "write",
    ),
    ("GET", "/repos/{owner}/{repo}/compare/{basehead}{?per_page,page}"): ("contents", "read"),
    ("GET", "/repos/{owner}/{repo}/commits/{ref}"): ("contents", "read"),
    ("GET", "/repos/{owner}/{repo}/pulls{?state,sort,direction,per_page}"): (
        "pull_requests",
        "read",
    ),
    ("GET", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls"): ("pull_requests", "read"),
    # Comments on a pull request's conversation are issue comments: `issues` (or
    # `pull_requests`) write covers both the reply and the reaction.
    ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments"): ("issues", "write"),
    ("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"): ("issues", "write"),
    ("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments{?since,per_page}"): (
        "issues",
        "read",
    ),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"): ("issues", "write"),
    ("GET", "/repos/{owner}/{repo}/releases/tags/{tag}"): ("contents", "read"),
    ("POST", "/repos/{owner}/{repo}/releases"): ("contents", "write"),
    ("PATCH", "/repos/{owner}/{repo}/releases/{release_id}"): ("contents", "write"),
}

# What each subscribed event needs (GitHub's "Webhook events and payloads", per event).
EVENT_PERMISSIONS = {
    "create": ("contents", "read"),
    "push": ("contents", "read"),
    "workflow_run": ("actions", "read"),
    "workflow_job": ("actions", "read"),
    "deployment": ("deployments", "read"),
    # "To subscribe to this event, a GitHub App must have at least read-level access for the
    # "Deployments" repository permission" (GitHub's REST description, x-webhooks).
    "deployment_protection_rule": ("deployments", "read"),
    "issue_comment": ("issues", "read"),
}


def endpoint_calls() -> set[tuple[str, str]]:
    """(method, template) of every endpoint in bot/github/endpoints.py called with an
    installation's token."""
    return {(e.method, e.template) for e in ENDPOINTS if e.permission is not None}


def installation_calls() -> set[tuple[str, str]]:
    """(method, template) of every GitHub call Tarmac makes with an installation's token."""
    return endpoint_calls() | written_out_calls()


def test_every_github_call_goes_through_endpoints() -> None:
    """A call written out elsewhere (`client.call("POST", "/repos/...")`) would bypass the
    permission each endpoint names."""
    assert written_out_calls() == set()


def test_the_call_scan_sees_a_written_out_call(tmp_path: Path) -> None:
    module = tmp_path / "bot" / "effect.py"
    module.parent.mkdir()
    module.write_text(
        'PATH = "/repos/{owner}/{repo}/issues/{issue_number}/comments"\n'
        "async def post(ctx):\n"
        '    await ctx.client.call("POST", PATH, installation_id=1, url_vars={})\n'
        '    await ctx.client.call("GET", "/app", installation_id=None)\n'
    )
    assert written_out_calls(tmp_path) == {
        ("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
    }


def written_out_calls(root: Path = ROOT) -> set[tuple[str, str]]:
    """(method, template) of every `….call("METHOD", "/path", …)` in bot/ made with an
    installation's token."""
    found = set()
    for path in sorted((root / "bot").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        constants = _string_assignments(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "call" or len(node.args) < 2:
                continue
            method, template = node.args[0], node.args[1]
            if not (isinstance(method, ast.Constant) and isinstance(method.value, str)):
                continue
            as_app = any(
                k.arg == "installation_id"
                and isinstance(k.value, ast.Constant)
                and k.value.value is None
                for k in node.keywords
            )
            if not as_app:
                found.add((method.value, _template(template, path, constants)))
    return found


def _string_assignments(tree: ast.AST) -> dict[str, str]:
    """`name = "a string"` anywhere in the module (a path kept in a variable)."""
    return {
        target.id: node.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _template(node: ast.expr, path: Path, constants: dict[str, str]) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    raise AssertionError(
        f"{path}: a GitHub call whose path is not written out: {ast.unparse(node)}"
    )


def needed(calls: set[tuple[str, str]], events: list[str]) -> dict[str, str]:
    wanted: dict[str, str] = {"metadata": "read"}  # every App has it
    for permission, level in [REST_PERMISSIONS[c] for c in calls] + [
        EVENT_PERMISSIONS[e] for e in events
    ]:
        if LEVELS[level] > LEVELS.get(wanted.get(permission, ""), 0):
            wanted[permission] = level
    return wanted


def test_every_github_call_has_its_permission_written_down() -> None:
    calls = installation_calls()

    assert len(calls) >= 12, calls  # the endpoints are found (a broken look finds none)
    unknown = sorted(calls - set(REST_PERMISSIONS))
    assert unknown == [], f"add the GitHub App permission these calls need: {unknown}"


def test_each_endpoint_names_the_permission_github_lists_for_it() -> None:
    named = {
        (e.method, e.template): (e.permission.name, e.permission.level)
        for e in ENDPOINTS
        if e.permission is not None
    }

    assert named == {call: REST_PERMISSIONS[call] for call in named}


def test_each_endpoint_is_an_operation_github_apps_may_call() -> None:
    paths = rest_description()["paths"]
    operations = {
        e: paths.get(e.template.split("{?")[0], {}).get(e.method.lower()) for e in ENDPOINTS
    }

    assert [e for e, operation in operations.items() if operation is None] == []
    # Installations' endpoints; the App's own (its JWT) are not "enabled for GitHub Apps".
    assert [
        e
        for e, operation in operations.items()
        if e.permission is not None and not operation["x-github"]["enabledForGitHubApps"]
    ] == []


def test_the_manifest_asks_for_exactly_what_the_calls_and_events_need() -> None:
    manifest = yaml.safe_load((ROOT / "app.yml").read_text())
    events = manifest["default_events"]

    assert set(events) <= set(EVENT_PERMISSIONS), "add the permission the new event needs"
    assert manifest["default_permissions"] == needed(installation_calls(), events)
