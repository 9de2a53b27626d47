"""Every GitHub endpoint Tarmac calls, one function each: its method, URL template and body,
and the App permission it needs. Callers name what they want (`create_deployment(...)`), never
a URL; this is the one module that knows GitHub's URLs and splits "owner/name".

Each function calls through `GitHubClient` (authentication, retries, rate limits, the two
exceptions) and returns GitHub's decoded answer. An endpoint's `permission` is what GitHub's
"Permissions required for GitHub Apps" lists for it; tests/test_app_permissions.py checks those
against GitHub's REST description and against app.yml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote


@dataclass(frozen=True)
class Page:
    """One page of a list: GitHub's answer, and the URL of the next page (Link header)."""

    data: Any
    next_url: str | None


class GitHubCaller(Protocol):
    """What an endpoint needs of bot.github.client.GitHubClient (which calls through here
    itself, for its installation tokens): one call, or one page of a list."""

    async def call(
        self,
        method: str,
        url: str,
        *,
        installation_id: int | None,
        url_vars: Mapping[str, Any] | None = None,
        data: Any = b"",
    ) -> Any: ...

    async def page(
        self, url: str, *, installation_id: int | None, url_vars: Mapping[str, Any] | None = None
    ) -> Page: ...


@dataclass(frozen=True)
class Permission:
    name: str  # e.g. "deployments"
    level: str  # "read" or "write"


@dataclass(frozen=True)
class Endpoint:
    method: str
    # As GitHub's REST description writes the path; `{?...}` adds query parameters.
    template: str
    # None: called as the App itself (its JWT), or with a person's user token: neither needs
    # an installation permission.
    permission: Permission | None


ENDPOINTS: list[Endpoint] = []


def _endpoint(method: str, template: str, permission: Permission | None) -> Endpoint:
    endpoint = Endpoint(method, template, permission)
    ENDPOINTS.append(endpoint)
    return endpoint


def _read(name: str) -> Permission:
    return Permission(name, "read")


def _write(name: str) -> Permission:
    return Permission(name, "write")


AS_APP = None
AS_USER = None

CREATE_INSTALLATION_TOKEN = _endpoint(
    "POST", "/app/installations/{installation_id}/access_tokens", AS_APP
)
GET_REPOSITORY_INSTALLATION = _endpoint("GET", "/repos/{owner}/{repo}/installation", AS_APP)
LIST_DELIVERIES = _endpoint("GET", "/app/hook/deliveries{?per_page}", AS_APP)
REDELIVER = _endpoint("POST", "/app/hook/deliveries/{delivery_id}/attempts", AS_APP)
# With a person's user access token (the dashboard's sign-in): who they are. No App
# permission: a user token reads its own user.
GET_AUTHENTICATED_USER = _endpoint("GET", "/user", AS_USER)
GET_REPOSITORY = _endpoint("GET", "/repos/{owner}/{repo}", _read("metadata"))
GET_COLLABORATOR_PERMISSION = _endpoint(
    "GET", "/repos/{owner}/{repo}/collaborators/{username}/permission", _read("metadata")
)
# Who may approve (bot/github/access.py): a team's member, read with the organisation's
# `members` permission (docs/github-app.md, "Team membership").
GET_TEAM_MEMBERSHIP = _endpoint(
    "GET", "/orgs/{org}/teams/{team_slug}/memberships/{username}", _read("members")
)
GET_REF = _endpoint("GET", "/repos/{owner}/{repo}/git/ref/{ref}", _read("contents"))
GET_TAG = _endpoint("GET", "/repos/{owner}/{repo}/git/tags/{tag_sha}", _read("contents"))
CREATE_DEPLOYMENT = _endpoint("POST", "/repos/{owner}/{repo}/deployments", _write("deployments"))
LIST_DEPLOYMENTS = _endpoint(
    "GET", "/repos/{owner}/{repo}/deployments{?sha,environment}", _read("deployments")
)
CREATE_DEPLOYMENT_STATUS = _endpoint(
    "POST", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", _write("deployments")
)
LIST_DEPLOYMENT_STATUSES = _endpoint(
    "GET", "/repos/{owner}/{repo}/deployments/{deployment_id}/statuses", _read("deployments")
)
DISPATCH_WORKFLOW = _endpoint(
    "POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches", _write("actions")
)
LIST_WORKFLOW_RUNS = _endpoint(
    "GET",
    "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs"
    "{?event,created,per_page,exclude_pull_requests}",
    _read("actions"),
)
GET_WORKFLOW_RUN = _endpoint("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", _read("actions"))
CANCEL_WORKFLOW_RUN = _endpoint(
    "POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel", _write("actions")
)
# An App's answer to its own custom deployment protection rule: "Deployments" write (GitHub's
# "Permissions required for GitHub Apps", docs/github-app.md).
REVIEW_PROTECTION_RULE = _endpoint(
    "POST",
    "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule",
    _write("deployments"),
)
# Comments on a pull request's conversation are issue comments: `issues` write covers both
# the reply and the reaction.
CREATE_ISSUE_COMMENT = _endpoint(
    "POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments", _write("issues")
)
CREATE_COMMENT_REACTION = _endpoint(
    "POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions", _write("issues")
)
LIST_ISSUE_COMMENTS = _endpoint(
    "GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments{?since,per_page}", _read("issues")
)
UPDATE_ISSUE_COMMENT = _endpoint(
    "PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}", _write("issues")
)
# Releases are repository contents: reading one needs `contents` read, making one write.
GET_RELEASE_BY_TAG = _endpoint(
    "GET", "/repos/{owner}/{repo}/releases/tags/{tag}", _read("contents")
)
CREATE_RELEASE = _endpoint("POST", "/repos/{owner}/{repo}/releases", _write("contents"))
UPDATE_RELEASE = _endpoint(
    "PATCH", "/repos/{owner}/{repo}/releases/{release_id}", _write("contents")
)

# What ships (bot/github/outbound/change_reports.py): the commits between two candidates, the
# files a commit changed (a project's `paths:`), and the pull requests they were merged in.
COMPARE_COMMITS = _endpoint(
    "GET", "/repos/{owner}/{repo}/compare/{basehead}{?per_page,page}", _read("contents")
)
GET_COMMIT = _endpoint("GET", "/repos/{owner}/{repo}/commits/{ref}", _read("contents"))
LIST_PULL_REQUESTS = _endpoint(
    "GET",
    "/repos/{owner}/{repo}/pulls{?state,sort,direction,per_page}",
    _read("pull_requests"),
)
LIST_COMMIT_PULL_REQUESTS = _endpoint(
    "GET", "/repos/{owner}/{repo}/commits/{commit_sha}/pulls", _read("pull_requests")
)


def owner_and_name(repo: str) -> dict[str, str]:
    """ "owner/name" as GitHub's URL templates name its halves."""
    owner, _, name = repo.partition("/")
    return {"owner": owner, "repo": name}


# --- as the App ---------------------------------------------------------------------------


async def create_installation_token(client: GitHubCaller, installation_id: int) -> Any:
    """A new installation token: `{"token": ..., "expires_at": ...}`."""
    return await _as_app(
        client, CREATE_INSTALLATION_TOKEN, {"installation_id": installation_id}, data={}
    )


async def get_repository_installation(client: GitHubCaller, repo: str) -> Any:
    """The installation serving `repo` (GitHubRefused 404: the App is not installed there)."""
    return await _as_app(client, GET_REPOSITORY_INSTALLATION, owner_and_name(repo))


async def list_deliveries(client: GitHubCaller, per_page: int, *, url: str | None) -> Page:
    """A page of the App's webhook deliveries, newest first; `url` the next page's, if one."""
    # Written out, not expanded: the first page's URL is also its metrics label.
    first = LIST_DELIVERIES.template.split("{?")[0] + f"?per_page={per_page}"
    return await client.page(url or first, installation_id=None)


async def redeliver(client: GitHubCaller, delivery_id: int) -> Any:
    """Ask GitHub to send a delivery again."""
    return await _as_app(client, REDELIVER, {"delivery_id": delivery_id}, data={})


# --- as a person (a user access token) ------------------------------------------------


class UserCaller(Protocol):
    async def call_as_user(
        self, method: str, url: str, *, token: str, url_vars: Mapping[str, Any] | None = None
    ) -> Any: ...


async def get_authenticated_user(client: UserCaller, token: str) -> Any:
    """The user the token belongs to: `{"login": ..., "id": ...}` among others."""
    endpoint = GET_AUTHENTICATED_USER
    return await client.call_as_user(endpoint.method, endpoint.template, token=token)


# --- repositories and git -----------------------------------------------------------------


async def get_repository(client: GitHubCaller, installation_id: int, repo: str) -> Any:
    return await _call(client, GET_REPOSITORY, installation_id, repo)


async def get_collaborator_permission(
    client: GitHubCaller, installation_id: int, repo: str, *, username: str
) -> Any:
    """`{"permission": admin/write/read/none, "role_name": ...}` (404: no such user here)."""
    return await _call(
        client, GET_COLLABORATOR_PERMISSION, installation_id, repo, username=username
    )


async def get_team_membership(
    client: GitHubCaller, installation_id: int, *, org: str, team_slug: str, username: str
) -> Any:
    """`{"state": active/pending, "role": ...}` (404: not a member of the team)."""
    return await client.call(
        GET_TEAM_MEMBERSHIP.method,
        GET_TEAM_MEMBERSHIP.template,
        installation_id=installation_id,
        url_vars={"org": org, "team_slug": team_slug, "username": username},
    )


async def get_tag_ref(client: GitHubCaller, installation_id: int, repo: str, *, tag: str) -> Any:
    """The git ref `tags/<tag>`: its `object` is a commit, or a tag object (annotated)."""
    # Tags may hold '/' (kept: the ref is multi-segment) and characters a URL must escape.
    path = "/".join(quote(part, safe="") for part in tag.split("/"))
    url = GET_REF.template.replace("{ref}", "tags/" + path)
    return await client.call(
        GET_REF.method, url, installation_id=installation_id, url_vars=owner_and_name(repo)
    )


async def get_tag(client: GitHubCaller, installation_id: int, repo: str, *, tag_sha: str) -> Any:
    """An annotated tag object; its `object` is what it points at."""
    return await _call(client, GET_TAG, installation_id, repo, tag_sha=tag_sha)


# --- history: commits and pull requests ---------------------------------------------------


async def compare_commits(
    client: GitHubCaller,
    installation_id: int,
    repo: str,
    *,
    base: str,
    head: str,
    per_page: int,
    url: str | None,
) -> Page:
    """A page of the comparison `base...head`: its status, ahead_by, behind_by and a page of
    the commits head has and base has not, oldest first; `url` the next page's, if one."""
    if url is not None:
        return await client.page(url, installation_id=installation_id)
    url_vars = {**owner_and_name(repo), "basehead": f"{base}...{head}", "per_page": per_page}
    return await client.page(
        COMPARE_COMMITS.template, installation_id=installation_id, url_vars=url_vars
    )


async def get_commit(
    client: GitHubCaller, installation_id: int, repo: str, *, sha: str, url: str | None
) -> Page:
    """One commit with a page of the files it changed (300 a page, up to 3000); `url` the
    next page's, if one."""
    if url is not None:
        return await client.page(url, installation_id=installation_id)
    url_vars = {**owner_and_name(repo), "ref": sha}
    return await client.page(
        GET_COMMIT.template, installation_id=installation_id, url_vars=url_vars
    )


async def list_closed_pull_requests(
    client: GitHubCaller, installation_id: int, repo: str, *, per_page: int, url: str | None
) -> Page:
    """A page of the repository's closed pull requests, most recently updated first."""
    if url is not None:
        return await client.page(url, installation_id=installation_id)
    url_vars = {
        **owner_and_name(repo),
        "state": "closed",
        "sort": "updated",
        "direction": "desc",
        "per_page": per_page,
    }
    return await client.page(
        LIST_PULL_REQUESTS.template, installation_id=installation_id, url_vars=url_vars
    )


async def list_commit_pull_requests(
    client: GitHubCaller, installation_id: int, repo: str, *, sha: str
) -> Any:
    """The pull requests a commit belongs to; for a commit on the default branch, the merged
    one that brought it there."""
    return await _call(client, LIST_COMMIT_PULL_REQUESTS, installation_id, repo, commit_sha=sha)


# --- deployments --------------------------------------------------------------------------


async def create_deployment(
    client: GitHubCaller, installation_id: int, repo: str, *, body: dict[str, Any]
) -> Any:
    """The new GitHub Deployment (a body without `id`: GitHub answered 202, merged instead)."""
    return await _call(client, CREATE_DEPLOYMENT, installation_id, repo, data=body)


async def list_deployments(
    client: GitHubCaller, installation_id: int, repo: str, *, sha: str, environment: str
) -> Any:
    return await _call(
        client, LIST_DEPLOYMENTS, installation_id, repo, sha=sha, environment=environment
    )


async def create_deployment_status(
    client: GitHubCaller,
    installation_id: int,
    repo: str,
    *,
    deployment_id: int,
    body: dict[str, Any],
) -> Any:
    return await _call(
        client,
        CREATE_DEPLOYMENT_STATUS,
        installation_id,
        repo,
        data=body,
        deployment_id=deployment_id,
    )


async def list_deployment_statuses(
    client: GitHubCaller, installation_id: int, repo: str, *, deployment_id: int
) -> Any:
    """The deployment's statuses, newest first."""
    return await _call(
        client, LIST_DEPLOYMENT_STATUSES, installation_id, repo, deployment_id=deployment_id
    )


# --- workflows ----------------------------------------------------------------------------


async def dispatch_workflow(
    client: GitHubCaller,
    installation_id: int,
    repo: str,
    *,
    workflow: str,
    ref: str,
    inputs: dict[str, str],
) -> Any:
    """Start a run; with `return_run_details` the answer names it (`workflow_run_id`)."""
    body = {"ref": ref, "inputs": inputs, "return_run_details": True}
    return await _call(
        client, DISPATCH_WORKFLOW, installation_id, repo, data=body, workflow_id=workflow
    )


async def list_workflow_runs(
    client: GitHubCaller,
    installation_id: int,
    repo: str,
    *,
    workflow: str,
    created: str,
    per_page: int,
    url: str | None,
) -> Page:
    """A page of the workflow's `workflow_dispatch` runs created `created` (e.g. `>=<time>`);
    `url` the next page's, if one."""
    if url is not None:
        return await client.page(url, installation_id=installation_id)
    url_vars: dict[str, Any] = {
        **owner_and_name(repo),
        "workflow_id": workflow,
        "event": "workflow_dispatch",
        "created": created,
        "per_page": per_page,
        "exclude_pull_requests": "true",
    }
    return await client.page(
        LIST_WORKFLOW_RUNS.template, installation_id=installation_id, url_vars=url_vars
    )


async def get_workflow_run(
    client: GitHubCaller, installation_id: int, repo: str, *, run_id: int
) -> Any:
    return await _call(client, GET_WORKFLOW_RUN, installation_id, repo, run_id=run_id)


async def cancel_workflow_run(
    client: GitHubCaller, installation_id: int, repo: str, *, run_id: int
) -> Any:
    """Cancel a run (GitHubRefused 409: it had finished already)."""
    return await _call(client, CANCEL_WORKFLOW_RUN, installation_id, repo, run_id=run_id)


async def review_protection_rule(
    client: GitHubCaller, installation_id: int, repo: str, *, run_id: int, body: dict[str, Any]
) -> Any:
    """Approve or reject the run's job held by Tarmac's protection rule (`environment_name`,
    `state` approved or rejected, `comment`); GitHub answers 204."""
    return await _call(
        client, REVIEW_PROTECTION_RULE, installation_id, repo, run_id=run_id, data=body
    )


# --- pull-request conversations -----------------------------------------------------------


async def create_issue_comment(
    client: GitHubCaller, installation_id: int, repo: str, *, issue_number: int, body: str
) -> Any:
    return await _call(
        client,
        CREATE_ISSUE_COMMENT,
        installation_id,
        repo,
        data={"body": body},
        issue_number=issue_number,
    )


async def create_comment_reaction(
    client: GitHubCaller, installation_id: int, repo: str, *, comment_id: int, content: str
) -> Any:
    """React to a comment (200 when the reaction exists already, 201 when made)."""
    return await _call(
        client,
        CREATE_COMMENT_REACTION,
        installation_id,
        repo,
        data={"content": content},
        comment_id=comment_id,
    )


async def list_issue_comments(
    client: GitHubCaller,
    installation_id: int,
    repo: str,
    *,
    issue_number: int,
    since: str,
    per_page: int,
    url: str | None,
) -> Page:
    """A page of the pull request's conversation comments updated at or after `since` (ISO
    8601), oldest first; `url` the next page's, if one."""
    if url is not None:
        return await client.page(url, installation_id=installation_id)
    url_vars = {
        **owner_and_name(repo),
        "issue_number": issue_number,
        "since": since,
        "per_page": per_page,
    }
    return await client.page(
        LIST_ISSUE_COMMENTS.template, installation_id=installation_id, url_vars=url_vars
    )


async def update_issue_comment(
    client: GitHubCaller, installation_id: int, repo: str, *, comment_id: int, body: str
) -> Any:
    """Edit a comment (GitHubRefused 404: someone deleted it)."""
    return await _call(
        client,
        UPDATE_ISSUE_COMMENT,
        installation_id,
        repo,
        data={"body": body},
        comment_id=comment_id,
    )


# --- releases -----------------------------------------------------------------------------


async def get_release_by_tag(
    client: GitHubCaller, installation_id: int, repo: str, *, tag: str
) -> Any:
    """The published release of `tag` (GitHubRefused 404: none). The tag is one path segment:
    a '/' in it is sent escaped, as GitHub's own clients send it."""
    return await _call(client, GET_RELEASE_BY_TAG, installation_id, repo, tag=tag)


async def create_release(
    client: GitHubCaller, installation_id: int, repo: str, *, tag: str, name: str, body: str
) -> Any:
    """A release of an existing tag (so no `target_commitish`)."""
    data = {"tag_name": tag, "name": name, "body": body}
    return await _call(client, CREATE_RELEASE, installation_id, repo, data=data)


async def update_release(
    client: GitHubCaller, installation_id: int, repo: str, *, release_id: int, name: str, body: str
) -> Any:
    data = {"name": name, "body": body}
    return await _call(
        client, UPDATE_RELEASE, installation_id, repo, data=data, release_id=release_id
    )


# --- the calls ----------------------------------------------------------------------------


async def _call(
    client: GitHubCaller,
    endpoint: Endpoint,
    installation_id: int,
    repo: str,
    *,
    data: Any = b"",
    **url_vars: Any,
) -> Any:
    return await client.call(
        endpoint.method,
        endpoint.template,
        installation_id=installation_id,
        url_vars={**owner_and_name(repo), **url_vars},
        data=data,
    )


async def _as_app(
    client: GitHubCaller, endpoint: Endpoint, url_vars: dict[str, Any], *, data: Any = b""
) -> Any:
    return await client.call(
        endpoint.method, endpoint.template, installation_id=None, url_vars=url_vars, data=data
    )
