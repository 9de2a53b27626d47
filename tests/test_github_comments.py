"""Pull-request commands end to end: GitHub's `issue_comment` example payloads, re-addressed to
the test repositories and signed, through the real app; the outbox delivers the 👀 reaction,
runs the command after the commenter's permission is read from the fake GitHub, and posts the
reply; what changed is read back through the REST API and the fake GitHub."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.github.outbound.worker import OutboxWorker
from tests.conftest import (
    BACKEND_INSTALLATION,
    MONOREPO_INSTALLATION,
    PROJECTS_YAML,
    SHA_A,
    SHA_B,
    Api,
    Reply,
    TestClock,
    Webhooks,
    github_payload,
)
from tests.fake_github import FakeGitHub

BACKEND = "acme/backend"
MONOREPO = "acme/monorepo"
PR_NUMBER = 42
DEPLOYMENTS_PAGE = "https://github.com/acme/backend/deployments"

_comment_ids = itertools.count(1_500_000_001)


def comment_event(
    body: str,
    *,
    login: str = "octocat",
    action: str = "created",
    repo: str = BACKEND,
    installation: int = BACKEND_INSTALLATION,
    on_pull_request: bool = True,
    user_type: str = "User",
    sender_type: str = "User",
    comment_id: int | None = None,
) -> dict[str, Any]:
    """GitHub's `issue_comment` example for `action`, re-addressed: `body` written by `login`
    on pull request #42 of `repo`."""
    payload = github_payload("issue_comment", action)
    owner, name = repo.split("/")
    repository = payload["repository"]
    repository.update(full_name=repo, name=name, html_url=f"https://github.com/{repo}")
    repository["owner"]["login"] = owner
    payload["installation"] = {"id": installation, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbA=="}
    issue = payload["issue"]
    issue["number"] = PR_NUMBER
    if on_pull_request:
        issue["pull_request"] = {
            "url": f"https://api.github.com/repos/{repo}/pulls/{PR_NUMBER}",
            "html_url": f"https://github.com/{repo}/pull/{PR_NUMBER}",
            "diff_url": f"https://github.com/{repo}/pull/{PR_NUMBER}.diff",
            "patch_url": f"https://github.com/{repo}/pull/{PR_NUMBER}.patch",
            "merged_at": None,
        }
    comment = payload["comment"]
    comment["id"] = comment_id if comment_id is not None else next(_comment_ids)
    comment["body"] = body
    comment["user"].update(login=login, type=user_type)
    payload["sender"].update(login=login, type=sender_type)
    return payload


async def send_comment(
    webhook: Webhooks, outbox: OutboxWorker, body: str, **event: Any
) -> tuple[Reply, dict[str, Any]]:
    """Post the comment, deliver everything it leads to; the answer and the payload sent."""
    payload = comment_event(body, **event)
    answer = await webhook("issue_comment", payload)
    assert answer.status == 202, answer.body
    await outbox.drain()
    return answer, payload


def replies(fake: FakeGitHub) -> list[str]:
    return [c["body"] for c in fake.comments]


def github_deployments(fake: FakeGitHub, repo: str = BACKEND) -> list[dict[str, Any]]:
    return fake.deployments.get(repo, [])


async def history(api: Api, environment: str = "production") -> list[dict[str, Any]]:
    return await history_of(api, "Backend", environment)


async def history_of(api: Api, project: str, environment: str) -> list[dict[str, Any]]:
    """The environment's deployments, newest first."""
    found = await api.deployments(environment, project=project)
    assert found.status == 200
    body: list[dict[str, Any]] = found.body
    return body


async def environment_state(api: Api, name: str, project: str = "Backend") -> dict[str, Any]:
    listed = await api.get(f"/api/releases/{project}/environments")
    [environment] = [e for e in listed.body if e["name"] == name]
    return dict(environment)


async def freeze(api: Api, environment: str, reason: str, project: str = "Backend") -> None:
    frozen = await api.put(
        f"/api/releases/{project}/environments/{environment}/freeze", {"reason": reason}
    )
    assert frozen.status == 200, frozen.body


async def v2_running_after_v1(api: Api, outbox: OutboxWorker) -> None:
    """Production ran v1-rc1, then v2-rc1: a rollback goes back to v1-rc1."""
    await api.ship("production", "v1-rc1", SHA_A)
    await api.ship("production", "v2-rc1", SHA_B)
    await outbox.drain()


def first_call(fake: FakeGitHub, method: str, path_end: str) -> int:
    return next(
        i for i, c in enumerate(fake.calls) if c.method == method and c.path.endswith(path_end)
    )


# --- /rollback -----------------------------------------------------------------------------


@pytest.mark.both_databases
async def test_rollback_by_a_writer_reacts_rolls_back_and_replies(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await v2_running_after_v1(github_api, outbox)
    fake_github.grant(BACKEND, "octocat", "write")
    known = len(github_deployments(fake_github))

    answer, payload = await send_comment(
        webhook, outbox, "Production is on fire.\n\n/rollback production\n"
    )

    assert answer.body["status"] == "accepted"
    comment_id = payload["comment"]["id"]
    assert fake_github.reactions == [{"comment_id": comment_id, "repo": BACKEND, "content": "eyes"}]
    rollback = (await history(github_api))[0]
    assert rollback["kind"] == "rollback"
    assert rollback["release_candidate_version"] == "v1-rc1"
    assert rollback["from_release_candidate_version"] == "v2-rc1"
    assert rollback["actor"] == "github:octocat"
    [mirrored] = github_deployments(fake_github)[known:]
    assert mirrored["payload"]["tarmac_deployment_id"] == rollback["id"]
    assert (mirrored["sha"], mirrored["environment"]) == (SHA_A, "production")
    [run] = [r for r in fake_github.runs.values() if r.inputs.get("tarmac_deployment_id")]
    assert run.inputs["tarmac_deployment_id"] == str(rollback["id"])
    [reply] = fake_github.comments
    assert reply["issue_number"] == PR_NUMBER
    assert reply["body"].startswith("> `/rollback production`\n\n✅ ")
    assert "from `v2-rc1` to `v1-rc1`" in reply["body"]
    assert f"Tarmac deployment {rollback['id']}" in reply["body"]
    assert "`deploy.yml`" in reply["body"]
    assert DEPLOYMENTS_PAGE in reply["body"]
    # 👀 first, then the permission, then the answer.
    reacted = first_call(fake_github, "POST", "/reactions")
    checked = first_call(fake_github, "GET", "/collaborators/octocat/permission")
    answered = first_call(fake_github, "POST", f"/issues/{PR_NUMBER}/comments")
    assert reacted < checked < answered


@pytest.mark.parametrize(
    ("login", "grant"),
    [("reader", "read"), ("fork-author", "read"), ("passer-by", None)],
    ids=["reader", "fork author without write access", "not a collaborator"],
)
async def test_rollback_without_write_access_is_refused_and_changes_nothing(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    login: str,
    grant: str | None,
) -> None:
    await v2_running_after_v1(github_api, outbox)
    if grant is not None:
        fake_github.grant(BACKEND, login, grant)
    before = await history(github_api)
    known = len(github_deployments(fake_github))
    runs = len(fake_github.runs)

    await send_comment(webhook, outbox, "/rollback production", login=login)

    assert len(fake_github.reactions) == 1
    [reply] = replies(fake_github)
    assert reply.startswith("> `/rollback production`\n\n🚫 ")
    assert f"@{login} needs **write** access to {BACKEND}" in reply
    assert f"(GitHub reports **{grant or 'none'}**)" in reply
    assert await history(github_api) == before
    assert len(github_deployments(fake_github)) == known
    assert len(fake_github.runs) == runs


@pytest.mark.parametrize(
    "event",
    [
        {"login": "tarmac[bot]", "user_type": "Bot", "sender_type": "Bot"},
        {"login": "renovate[bot]"},
        {"user_type": "Bot"},
        {"sender_type": "Bot"},
    ],
    ids=["github app", "bot login", "bot user", "bot sender"],
)
async def test_a_command_from_a_bot_is_ignored(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    event: dict[str, Any],
) -> None:
    fake_github.grant(BACKEND, event.get("login", "octocat"), "admin")

    answer, _ = await send_comment(webhook, outbox, "/rollback production", **event)

    assert answer.body == {"status": "ignored", "outcome": "ignored: comment by a bot"}
    assert fake_github.calls == []


async def test_a_frozen_environment_refuses_a_rollback_and_says_why(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await v2_running_after_v1(github_api, outbox)
    await freeze(github_api, "production", "release week")
    fake_github.grant(BACKEND, "octocat", "write")
    before = await history(github_api)

    await send_comment(webhook, outbox, "/rollback production")

    [reply] = replies(fake_github)
    assert "🚫 **production** (Backend) is frozen by ci@\u200bexample.com since " in reply
    assert reply.endswith(
        ": release week. Add `--force` to roll back anyway (maintain or admin role), "
        "or `/unfreeze production` first."
    )
    assert await history(github_api) == before


@pytest.mark.parametrize(
    ("permission", "role_name", "rolled_back"),
    [("write", "write", False), ("write", "maintain", True), ("admin", "admin", True)],
    ids=["writer", "maintainer", "admin"],
)
async def test_force_rolls_back_a_frozen_environment_for_maintainers_and_admins_only(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    permission: str,
    role_name: str,
    rolled_back: bool,
) -> None:
    await v2_running_after_v1(github_api, outbox)
    await freeze(github_api, "production", "release week")
    fake_github.grant(BACKEND, "octocat", permission, role_name)
    before = await history(github_api)

    await send_comment(webhook, outbox, "/rollback production --force")

    [reply] = replies(fake_github)
    after = await history(github_api)
    if rolled_back:
        assert after[0]["kind"] == "rollback"
        assert after[0]["release_candidate_version"] == "v1-rc1"
        assert "✅ Rolling back **production**" in reply
        assert (await environment_state(github_api, "production"))["frozen"] is True
    else:
        assert after == before
        assert (
            "🚫 `--force` needs the **maintain** or **admin** role on acme/backend; "
            "@octocat has **write**." in reply
        )


async def test_a_rollback_after_a_failed_redeploy_deploys_the_running_version_again(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.ship("production", "v1-rc1")
    await github_api.deploy("production", "v1-rc1")
    await github_api.report("production", "v1-rc1", "failure")
    await outbox.drain()
    fake_github.grant(BACKEND, "octocat", "write")

    await send_comment(webhook, outbox, "/rollback production")

    assert (await history(github_api))[0]["kind"] == "rollback"
    [reply] = replies(fake_github)
    assert "✅ Deploying `v1-rc1` (commit " in reply
    assert "to **production** (Backend) again" in reply


async def test_a_deploy_without_a_deploy_workflow_says_where_its_status_comes_from(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", project="Frontend")
    fake_github.grant(MONOREPO, "octocat", "write")

    await send_comment(
        webhook,
        outbox,
        "/deploy v1-rc1 to production",
        repo=MONOREPO,
        installation=MONOREPO_INSTALLATION,
    )

    [deployment] = await history_of(github_api, "Frontend", "production")
    assert deployment["actor"] == "github:octocat"
    assert fake_github.runs == {}
    [reply] = replies(fake_github)
    assert reply.endswith(
        "**production** has no deploy workflow: the deployment's status comes from your CD "
        "system through Tarmac's API, and shows on https://github.com/acme/monorepo/deployments."
    )


async def test_nothing_to_roll_back_to_is_answered(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.ship("production", "v1-rc1")
    await outbox.drain()
    fake_github.grant(BACKEND, "octocat", "write")
    before = await history(github_api)

    await send_comment(webhook, outbox, "/rollback production")

    [reply] = replies(fake_github)
    assert (
        "🚫 nothing to roll back to in **production** (Backend): "
        "No previous deployment to roll back from." in reply
    )
    assert await history(github_api) == before


async def test_an_unknown_environment_is_answered_with_the_known_ones(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    fake_github.grant(BACKEND, "octocat", "write")

    await send_comment(webhook, outbox, "/rollback prod")

    [reply] = replies(fake_github)
    assert reply == (
        "> `/rollback prod`\n\n🚫 unknown environment `prod` in Backend; "
        "its environments: `staging`, `production`."
    )
    assert github_deployments(fake_github) == []


# --- /deploy ------------------------------------------------------------------------------


async def test_deploy_a_release_candidate_to_an_environment(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    fake_github.grant(BACKEND, "octocat", "write")

    await send_comment(webhook, outbox, "/deploy v1-rc1 to staging")

    [deployment] = await history(github_api, "staging")
    assert deployment["kind"] == "deploy"
    assert deployment["release_candidate_version"] == "v1-rc1"
    assert deployment["actor"] == "github:octocat"
    [mirrored] = github_deployments(fake_github)
    assert (mirrored["environment"], mirrored["sha"]) == ("staging", SHA_A)
    [run] = fake_github.runs.values()
    assert run.inputs["tarmac_deployment_id"] == str(deployment["id"])
    [reply] = replies(fake_github)
    assert reply.startswith(
        "> `/deploy v1-rc1 to staging`\n\n✅ Deploying `v1-rc1` (commit "
        f"[`aaaaaaa`](https://github.com/acme/backend/commit/{SHA_A})) to **staging** (Backend)"
    )
    assert DEPLOYMENTS_PAGE in reply


@pytest.mark.parametrize(
    ("command", "refusal"),
    [
        ("/deploy v9-rc1 to staging", "release candidate `v9-rc1` not found in Backend."),
        ("/deploy v1-rc2 to staging", "Release candidate is still building."),
        ("/deploy v1-rc1 to production", "**production** (Backend) is frozen by "),
    ],
    ids=["unknown release candidate", "still building", "frozen"],
)
async def test_a_deploy_the_rules_refuse_is_answered(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    command: str,
    refusal: str,
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    await github_api.create_rc("v1-rc2", SHA_B, trigger_build_workflow=True)
    await freeze(github_api, "production", "release week")
    await outbox.drain()
    fake_github.grant(BACKEND, "octocat", "write")

    await send_comment(webhook, outbox, command)

    [reply] = replies(fake_github)
    assert f"🚫 {refusal}" in reply
    assert github_deployments(fake_github) == []


# --- /freeze and /unfreeze ------------------------------------------------------------------


async def test_freeze_then_unfreeze_an_environment(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    fake_github.grant(BACKEND, "octocat", "write")

    await send_comment(webhook, outbox, "/freeze production release week")

    production = await environment_state(github_api, "production")
    assert production["frozen"] is True
    assert production["freeze"]["reason"] == "release week"
    assert production["freeze"]["by"] == "github:octocat"
    await github_api.create_rc("v1-rc1")
    assert (await github_api.deploy("production", "v1-rc1")).status == 400

    await send_comment(webhook, outbox, "/unfreeze production")
    await send_comment(webhook, outbox, "/unfreeze production")

    assert (await environment_state(github_api, "production"))["frozen"] is False
    assert replies(fake_github) == [
        "> `/freeze production release week`\n\n✅ **production** (Backend) is frozen: "
        "release week. Deploys are refused until `/unfreeze production`; a rollback needs "
        "`--force` (maintain or admin role).",
        "> `/unfreeze production`\n\n✅ **production** (Backend) is no longer frozen.",
        "> `/unfreeze production`\n\n✅ **production** (Backend) was not frozen; nothing changed.",
    ]


# --- /cancel --------------------------------------------------------------------------------


async def test_cancel_ends_the_deployment_under_way_and_its_run(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    fake_github.grant(BACKEND, "octocat", "write")
    await github_api.create_rc("v1-rc1")
    deployed = await github_api.deploy("production", "v1-rc1")
    await outbox.drain()
    [run_id] = fake_github.runs

    await send_comment(webhook, outbox, "/cancel production")
    await send_comment(webhook, outbox, "/cancel production")

    assert fake_github.runs[run_id].canceled
    listed = await github_api.deployments("production")
    assert listed.body[0]["status"] == "canceled"
    assert listed.body[0]["error_message"] == "Canceled by github:octocat"
    assert replies(fake_github) == [
        f"> `/cancel production`\n\n✅ Canceled deployment {deployed.body['id']} (`v1-rc1`, "
        "deploy) in **production** (Backend), as @octocat asked. Its deploy workflow run, if "
        "it started one, is being canceled on GitHub.",
        "> `/cancel production`\n\n🚫 nothing to cancel in **production** (Backend): no "
        "deployment is under way.",
    ]


async def test_cancel_needs_write_access(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    fake_github.grant(BACKEND, "octocat", "read")
    await github_api.create_rc("v1-rc1")
    await github_api.deploy("production", "v1-rc1")
    await outbox.drain()

    await send_comment(webhook, outbox, "/cancel production")

    assert (await github_api.deployments("production")).body[0]["status"] == "pending"
    [reply] = replies(fake_github)
    assert "🚫 @octocat needs **write** access" in reply


# --- comments that are not for Tarmac ---------------------------------------------------------


IGNORED_COMMENTS: dict[str, tuple[Callable[[], dict[str, Any]], str]] = {
    "edited": (
        lambda: comment_event("/rollback production", action="edited"),
        "ignored: comment edited",
    ),
    "deleted": (
        lambda: comment_event("/rollback production", action="deleted"),
        "ignored: comment deleted",
    ),
    "on an issue": (
        lambda: comment_event("/rollback production", on_pull_request=False),
        "ignored: not a pull request",
    ),
    "no command": (
        lambda: comment_event("LGTM\n/lgtm\n> /rollback production\n```\n/deploy x\n```"),
        "ignored: no command",
    ),
    "repository without a project": (
        lambda: comment_event("/rollback production", repo="acme/website"),
        "ignored: acme/website serves no project",
    ),
}


@pytest.mark.parametrize("case", list(IGNORED_COMMENTS))
async def test_comments_that_are_not_commands_are_ignored(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    case: str,
) -> None:
    make, outcome = IGNORED_COMMENTS[case]
    fake_github.grant(BACKEND, "octocat", "admin")

    answer = await webhook("issue_comment", make())
    await outbox.drain()

    assert answer.status == 202
    assert answer.body == {"status": "ignored", "outcome": outcome}
    assert fake_github.calls == []


# --- several commands, malformed ones, redeliveries -------------------------------------------


async def test_several_commands_in_one_comment_run_in_the_order_written(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await v2_running_after_v1(github_api, outbox)
    await freeze(github_api, "production", "release week")
    fake_github.grant(BACKEND, "octocat", "write")

    await send_comment(
        webhook,
        outbox,
        "Taking production back:\n/unfreeze production\n/rollback production\n"
        "/freeze production until the fix lands",
    )

    # The rollback ran between the unfreeze and the new freeze.
    assert (await history(github_api))[0]["kind"] == "rollback"
    production = await environment_state(github_api, "production")
    assert production["freeze"]["reason"] == "until the fix lands"
    answered = replies(fake_github)
    assert len(answered) == 3
    assert answered[0].startswith("> `/unfreeze production`\n\n✅ ")
    assert answered[1].startswith("> `/rollback production`\n\n✅ Rolling back")
    assert answered[2].startswith("> `/freeze production until the fix lands`\n\n✅ ")
    assert len(fake_github.reactions) == 1


async def test_a_malformed_command_is_answered_with_its_usage(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await v2_running_after_v1(github_api, outbox)
    fake_github.grant(BACKEND, "octocat", "write")
    before = await history(github_api)

    answer, _ = await send_comment(webhook, outbox, "/rollback production --froce")

    assert answer.body["status"] == "accepted"
    assert len(fake_github.reactions) == 1
    assert replies(fake_github) == [
        "> `/rollback production --froce`\n\n❓ Unknown flag '--froce'. "
        "Usage: `/rollback <environment> [--force [reason]] [--project NAME]`"
    ]
    assert await history(github_api) == before
    assert fake_github.calls_to("GET", r"/permission$") == []


async def test_a_malformed_line_does_not_stop_the_valid_ones(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    fake_github.grant(BACKEND, "octocat", "write")

    await send_comment(webhook, outbox, "/deploy v1 to @everyone\n/freeze staging")

    assert (await environment_state(github_api, "staging"))["frozen"] is True
    usage, frozen = replies(fake_github)
    # The user's text is quoted, but mentions nobody.
    assert "Invalid release candidate version 'v1'" in usage
    assert "@everyone" not in usage.split("\n\n", 1)[1]
    assert frozen.startswith("> `/freeze staging`\n\n✅ ")


@pytest.mark.both_databases
async def test_a_redelivered_comment_runs_once(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await v2_running_after_v1(github_api, outbox)
    fake_github.grant(BACKEND, "octocat", "write")
    payload = comment_event("/rollback production")

    first = await webhook("issue_comment", payload, delivery_id="d-comment-1")
    again = await webhook("issue_comment", payload, delivery_id="d-comment-1")
    # The same comment in another delivery (a second webhook on the repository).
    other = await webhook("issue_comment", payload, delivery_id="d-comment-2")
    await outbox.drain()

    assert first.body["status"] == "accepted"
    assert again.body["status"] == "duplicate"
    assert other.body["status"] == "ignored"
    assert "handled already" in other.body["outcome"]
    assert len(fake_github.reactions) == 1
    assert len(replies(fake_github)) == 1
    assert [d["kind"] for d in await history(github_api)].count("rollback") == 1


# --- GitHub trouble ---------------------------------------------------------------------------


async def test_a_rate_limited_reply_comes_later_and_the_command_runs_once(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    clock: TestClock,
) -> None:
    await v2_running_after_v1(github_api, outbox)
    fake_github.grant(BACKEND, "octocat", "write")
    fake_github.fail(r"/comments$", method="POST", status=429, headers={"Retry-After": "60"})

    await send_comment(webhook, outbox, "/rollback production")
    assert replies(fake_github) == []
    clock.advance(seconds=61)
    await outbox.drain()

    assert len(replies(fake_github)) == 1
    assert [d["kind"] for d in await history(github_api)].count("rollback") == 1


async def test_a_reply_whose_answer_was_lost_is_not_posted_again(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    clock: TestClock,
) -> None:
    fake_github.grant(BACKEND, "octocat", "write")
    fake_github.fail(r"/comments$", method="POST", drop_after_processing=True)

    await send_comment(webhook, outbox, "/freeze staging")
    for _ in range(3):
        clock.advance(minutes=1)
        await outbox.drain()

    assert len(replies(fake_github)) == 1
    assert len(fake_github.calls_to("POST", r"/comments$")) == 1


async def test_a_permission_check_github_refuses_is_answered(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    fake_github.fail(r"/permission$", status=403)

    await send_comment(webhook, outbox, "/freeze staging")

    [reply] = replies(fake_github)
    assert "🚫 Tarmac could not check @octocat's permission on acme/backend" in reply
    assert (await environment_state(github_api, "staging"))["frozen"] is False


# --- a repository with several projects --------------------------------------------------------

DOCS_PROJECT = """
  - name: Docs
    repo: acme/monorepo
    tag_prefix: docs/
    environments:
      - name: production
        deploy_workflow: docs.yml
"""


class TestARepositoryWithSeveralProjects:
    @pytest.fixture
    def projects_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "tarmac.yml"
        path.write_text(PROJECTS_YAML.rstrip("\n") + DOCS_PROJECT)
        return path

    async def test_a_command_names_its_project(
        self, github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
    ) -> None:
        fake_github.grant(MONOREPO, "octocat", "write")
        on_monorepo = {"repo": MONOREPO, "installation": MONOREPO_INSTALLATION}

        await send_comment(webhook, outbox, "/freeze production", **on_monorepo)
        await send_comment(webhook, outbox, "/freeze production --project Backend", **on_monorepo)
        await send_comment(webhook, outbox, "/freeze production --project Docs", **on_monorepo)

        docs = await environment_state(github_api, "production", "Docs")
        frontend = await environment_state(github_api, "production", "Frontend")
        backend = await environment_state(github_api, "production", "Backend")
        assert (docs["frozen"], frontend["frozen"], backend["frozen"]) == (True, False, False)
        assert replies(fake_github) == [
            "> `/freeze production`\n\n🚫 acme/monorepo serves several projects; name one with "
            "`--project NAME`: Docs, Frontend.",
            "> `/freeze production --project Backend`\n\n🚫 acme/monorepo has no project "
            "`Backend`; its projects: Docs, Frontend.",
            "> `/freeze production --project Docs`\n\n✅ **production** (Docs) is frozen. "
            "Deploys are refused until `/unfreeze production`; a rollback needs `--force` "
            "(maintain or admin role).",
        ]
        # Only the command that ran needed the permission.
        assert len(fake_github.calls_to("GET", r"/permission$")) == 1
