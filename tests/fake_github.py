"""A fake GitHub: a real aiohttp server that plays the REST endpoints Tarmac calls.

It is strict where GitHub is: a request whose path is not in GitHub's whole official REST
description (the pinned npm package `@octokit/openapi`, tests/github_material.py), whose path or
query parameters are not of the operation's types, or whose JSON body does not validate against
the operation's request schema, is answered 422 and recorded as a violation that fails the test.
Installation tokens are issued only to a correctly signed App JWT, and repository endpoints
take only tokens it issued. Tests can queue faults (502, 429 with Retry-After, a dropped
connection; a 502 after carrying the request out, or before carrying it out later) and read
back every call it received.

Workflow dispatches create runs, which the runs list serves (newest first, by page, filtered as
GitHub filters them) with the title GitHub Actions would give them: the `run-name` of Tarmac's
sample workflow (docs/workflows/) rendered with the dispatch's inputs, or the workflow's name
for a workflow without one. The list can lag behind (`list_lag`), as GitHub's does. Run times
are on the fake's `clock`, which tests that move Tarmac's clock share with it. A run of a
sample whose job declares `environment:` (deploy-with-environment.yml) gets the GitHub
Deployment Actions would make when its job starts (`start_job`), with Actions' statuses.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import html
import itertools
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt
import yaml
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from yarl import URL

from tests.fake_history import FILES_PAGE, History
from tests.github_material import webhook_event_names
from tests.github_rest import github_rest

SAMPLE_WORKFLOWS = Path(__file__).resolve().parent.parent / "docs" / "workflows"

RATE_LIMIT = 5000  # an installation's hourly budget
ACTIONS_LOGIN = "github-actions[bot]"
APP_SLUG = "tarmac"
_APP_AUTHOR = {"login": f"{APP_SLUG}[bot]", "type": "Bot"}
# A finished job's conclusion -> the state Actions gives the job's GitHub Deployment.
ACTIONS_STATES = {"success": "success", "failure": "failure", "timed_out": "failure"}


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    auth: str  # "jwt", "installation:<id>", "none"
    at: float = field(default_factory=time.monotonic)  # when it arrived
    faulted: bool = False  # answered by an injected fault

    @property
    def action(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Fault:
    """Answer the next `times` requests matching `method` and `path_pattern` this way."""

    path_pattern: str
    status: int = 502
    times: int = 1
    method: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    drop_connection: bool = False
    # Carry the request out, then drop the connection: the caller never learns it worked
    # (what a crash or a network cut between GitHub's work and its answer looks like).
    drop_after_processing: bool = False
    # Carry the request out, then answer `status` all the same (a proxy's 502 after GitHub's
    # work was done).
    act_first: bool = False
    # Answer `status` now and carry the request out this many seconds later on the fake's
    # clock (GitHub's front gave up while its back end went on).
    act_after: float | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return re.search(self.path_pattern, path) is not None


@dataclass
class Run:
    id: int
    repo: str
    workflow: str
    ref: str
    inputs: dict[str, Any]
    status: str = "queued"
    conclusion: str | None = None
    head_sha: str = "0" * 40
    canceled: bool = False
    title: str = ""  # display_title: the rendered run-name
    github_deployment_id: int | None = None  # the one Actions made for its job (`start_job`)
    event: str = "workflow_dispatch"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def sample_workflow(file_name: str) -> dict[str, Any]:
    """One of the sample workflows in docs/workflows/, as YAML reads it."""
    loaded: dict[str, Any] = yaml.safe_load((SAMPLE_WORKFLOWS / file_name).read_text())
    return loaded


def render_run_name(template: str, inputs: dict[str, Any]) -> str:
    """`run-name` as GitHub Actions renders it for a dispatch: `${{ inputs.x }}` is the input
    (an empty string when not given). The fake plays no other expression."""

    def value(found: re.Match[str]) -> str:
        expression = found[1].strip()
        name = expression.removeprefix("inputs.")
        if name == expression or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
            raise ValueError(f"the fake GitHub does not render ${{{{ {expression} }}}}")
        return str(inputs.get(name, ""))

    return re.sub(r"\$\{\{(.*?)\}\}", value, template)


def _created_filter(text: str) -> Callable[[datetime], bool] | None:
    """GitHub's search syntax for `created` (`>=T`, `>T`, `<=T`, `<T`, `T1..T2`); None for
    anything else."""

    def at(value: str) -> datetime | None:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

    for operator, test in (
        (">=", lambda t, b: t >= b),
        ("<=", lambda t, b: t <= b),
        (">", lambda t, b: t > b),
        ("<", lambda t, b: t < b),
    ):
        if text.startswith(operator):
            bound = at(text[len(operator) :])
            return None if bound is None else lambda t, b=bound, f=test: f(t, b)
    low, dots, high = text.partition("..")
    start, end = at(low), at(high)
    if dots and start is not None and end is not None:
        return lambda t: start <= t <= end
    return None


class FakeGitHub:
    def __init__(self, app_id: int, public_key_pem: str) -> None:
        self.app_id = app_id
        self.public_key_pem = public_key_pem
        self.rest = github_rest()
        self.calls: list[Call] = []
        self.in_flight = 0  # requests received and not answered yet
        self.rate_limit_remaining = RATE_LIMIT
        self.violations: list[str] = []
        self.faults: list[Fault] = []
        self.latency = 0.0
        self.slow: dict[str, float] = {}  # path pattern -> seconds between acting and answering
        # state
        self.installations: dict[str, int] = {}  # repo (lower) -> installation id
        self.tokens: dict[str, tuple[int, float]] = {}  # token -> (installation, expiry)
        self.token_lifetime = 3600.0
        self.refs: dict[tuple[str, str], dict[str, Any]] = {}  # (repo, "tags/x") -> object
        self.tag_objects: dict[tuple[str, str], str] = {}  # (repo, tag sha) -> commit sha
        self.deployments: dict[str, list[dict[str, Any]]] = {}  # repo -> deployments
        self.statuses: dict[int, list[dict[str, Any]]] = {}  # deployment id -> statuses
        self.runs: dict[int, Run] = {}
        # Workflow file -> its run-name (None: it has none, the title is the workflow's name)
        # and its name: Tarmac's samples, unless a test says otherwise.
        self.run_names: dict[str, str | None] = {}
        self.workflow_names: dict[str, str] = {}
        # Workflow file -> its job's `environment:` (a template): GitHub Actions makes a
        # GitHub Deployment for a run of it (`start_job`) and posts its statuses.
        self.job_environments: dict[str, str] = {}
        for sample in ("build.yml", "deploy.yml", "deploy-with-environment.yml"):
            workflow = sample_workflow(sample)
            self.run_names[sample] = workflow.get("run-name")
            self.workflow_names[sample] = str(workflow["name"])
            for job in workflow["jobs"].values():
                if "environment" in job:
                    self.job_environments[sample] = str(job["environment"])
        # A run shows in the runs list this many seconds after it was created.
        self.list_lag = 0.0
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self._deferred: list[tuple[datetime, Callable[[], Awaitable[Any]]]] = []
        self.permissions: dict[tuple[str, str], tuple[str, str]] = {}  # (repo, user) -> perm
        # ("org/team-slug", user), lower case -> the membership's state (active, pending)
        self.team_memberships: dict[tuple[str, str], str] = {}
        # Whether the installations were granted the organisation's `members` permission.
        self.members_permission = True
        self.comments: list[dict[str, Any]] = []
        self.releases: list[dict[str, Any]] = []
        self.reactions: list[dict[str, Any]] = []
        self.hook_deliveries: list[dict[str, Any]] = []
        self.redelivered: list[int] = []
        self.default_branch = "main"
        self.histories: dict[str, History] = {}  # repo (lower) -> its commits and PRs
        self._ids = itertools.count(1000)
        self.server_url = ""
        self.users: dict[str, int] = {}  # login -> id (the OAuth flow's people)
        # Jobs held by the App's custom deployment protection rule: (repo, run id, GitHub
        # environment) -> "waiting", or the state the App answered; and every answer.
        self.protection_gates: dict[tuple[str, int, str], str] = {}
        self.protection_reviews: list[dict[str, Any]] = []

    # --- set-up by tests -------------------------------------------------------------

    def install(self, repo: str, installation_id: int) -> None:
        self.installations[repo.lower()] = installation_id

    def add_tag(self, repo: str, tag: str, commit: str, *, annotated: bool = False) -> None:
        if annotated:
            tag_sha = secrets.token_hex(20)
            self.tag_objects[(repo.lower(), tag_sha)] = commit
            self.refs[(repo.lower(), f"tags/{tag}")] = {"type": "tag", "sha": tag_sha}
        else:
            self.refs[(repo.lower(), f"tags/{tag}")] = {"type": "commit", "sha": commit}

    def run_by_hand(self, repo: str, workflow: str, ref: str, head_sha: str) -> Run:
        """A run someone started from the Actions tab (Tarmac dispatched nothing)."""
        run = Run(
            id=next(self._ids),
            repo=repo.lower(),
            workflow=workflow,
            ref=ref,
            inputs={},
            head_sha=head_sha,
            title=self.workflow_names.get(workflow, workflow),
            created_at=self.clock(),
        )
        self.runs[run.id] = run
        return run

    def hold_at_protection_rule(self, run: Run, environment: str) -> None:
        """The run's job targets `environment`, whose custom protection rule is the App: it
        waits for the App's answer (GitHub sends deployment_protection_rule)."""
        self.protection_gates[(run.repo, run.id, environment)] = "waiting"

    def history(self, repo: str) -> History:
        """The repository's commits and pull requests (made on first use)."""
        return self.histories.setdefault(repo.lower(), History(repo))

    # --- GitHub Actions running a job that declares `environment:` ---------------------

    def start_job(self, run: Run) -> dict[str, Any] | None:
        """The job of `run` starts: for a workflow whose job declares `environment:`, Actions
        makes the GitHub Deployment (once per run) and shows it waiting, as GitHub does. None
        for a workflow without."""
        template = self.job_environments.get(run.workflow)
        if template is None:
            return None
        if run.github_deployment_id is not None:
            [found] = [d for d in self.deployments[run.repo] if d["id"] == run.github_deployment_id]
            return found
        deployment = {
            "id": next(self._ids),
            "sha": run.head_sha,
            "ref": run.ref,
            "task": "deploy",
            "environment": render_run_name(template, run.inputs),
            "payload": {},
            "creator": {"login": ACTIONS_LOGIN, "type": "Bot"},
            "production_environment": False,
            "description": None,
        }
        self.deployments.setdefault(run.repo, []).append(deployment)
        self.statuses[deployment["id"]] = []
        run.github_deployment_id = deployment["id"]
        self.post_actions_status(run, "waiting")
        return deployment

    def post_actions_status(self, run: Run, state: str) -> None:
        """A deployment status as Actions posts it on the run's GitHub Deployment."""
        assert run.github_deployment_id is not None, "the run's job has not started"
        self.statuses[run.github_deployment_id].append(
            {
                "id": next(self._ids),
                "state": state,
                "creator": {"login": ACTIONS_LOGIN, "type": "Bot"},
                "log_url": f"https://github.com/{run.repo}/actions/runs/{run.id}",
            }
        )

    def finish_job(self, run: Run, conclusion: str) -> None:
        """The job ended: Actions' final status on its GitHub Deployment."""
        self.post_actions_status(run, ACTIONS_STATES.get(conclusion, "error"))

    def grant(self, repo: str, user: str, permission: str, role_name: str | None = None) -> None:
        self.permissions[(repo.lower(), user.lower())] = (permission, role_name or permission)

    def add_team_member(self, team: str, user: str, state: str = "active") -> None:
        """`user` a member of `team` ("org/team-slug")."""
        self.team_memberships[(team.lower(), user.lower())] = state

    def fail(self, path_pattern: str, **kwargs: Any) -> Fault:
        fault = Fault(path_pattern, **kwargs)
        self.faults.append(fault)
        return fault

    def calls_to(self, method: str, path_pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.search(path_pattern, c.path)]

    # --- the server ------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._rate_limit_headers])
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    @web.middleware
    async def _rate_limit_headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """GitHub's x-ratelimit-* headers on every answer, the budget going down by one."""
        response: web.StreamResponse = await handler(request)
        self.rate_limit_remaining = max(0, self.rate_limit_remaining - 1)
        usual = {
            "X-RateLimit-Limit": str(RATE_LIMIT),
            "X-RateLimit-Remaining": str(self.rate_limit_remaining),
            "X-RateLimit-Used": str(RATE_LIMIT - self.rate_limit_remaining),
            "X-RateLimit-Reset": str(int(time.time()) + 3600),
            "X-RateLimit-Resource": "core",
        }
        for name, value in usual.items():  # a fault may bring its own
            response.headers.setdefault(name, value)
        return response

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.in_flight += 1
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        method = request.method
        path = request.path
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            return self._violation(f"{method} {path}: body is not JSON")
        auth = self._auth_kind(request)
        call = Call(method, path, dict(request.query), body, auth)
        self.calls.append(call)
        if self.latency:
            await asyncio.sleep(self.latency)
        await self.carry_out_deferred()
        after: Fault | None = None
        for fault in self.faults:
            if fault.times > 0 and fault.matches(method, path):
                fault.times -= 1
                call.faulted = True
                if fault.drop_after_processing or fault.act_first or fault.act_after is not None:
                    after = fault
                    break
                if fault.drop_connection:
                    assert request.transport is not None
                    request.transport.close()
                    return web.Response(status=502)
                return self._fault_answer(fault)
        # Routed on the path as sent: an escaped '/' (a tag in releases/tags/{tag}) stays
        # inside its segment; each parameter is then unescaped.
        route = self.rest.route(request.raw_path.split("?", 1)[0])
        if route is None:
            return self._violation(f"{method} {path}: not in GitHub's REST description")
        template, raw_params = route
        params = {name: unquote(value) for name, value in raw_params.items()}
        operation = self.rest.operation(method, template)
        if operation is None:
            return self._violation(f"{method} {template}: no such operation")
        problem = self.rest.request_problem(operation, params, dict(request.query), body)
        if problem is not None:
            return self._violation(f"{method} {template}: {problem}")
        handler = self._handlers().get(f"{method} {template}")
        if handler is None:
            return self._violation(f"{method} {template}: the fake does not play it")
        if after is not None and after.act_after is not None:
            due = self.clock() + timedelta(seconds=after.act_after)
            self._deferred.append((due, lambda: handler(request, params, body)))
            return self._fault_answer(after)
        response = await handler(request, params, body)
        # Done, but slow to answer: a caller that goes away now never learns it worked.
        delay = sum(seconds for pattern, seconds in self.slow.items() if re.search(pattern, path))
        if delay:
            await asyncio.sleep(delay)
        if after is not None and after.act_first:
            return self._fault_answer(after)
        if after is not None:
            assert request.transport is not None
            request.transport.close()
        return response

    def _fault_answer(self, fault: Fault) -> web.Response:
        return web.json_response(
            {"message": "fault injected"}, status=fault.status, headers=fault.headers
        )

    async def carry_out_deferred(self) -> None:
        """Carry out the requests a fault deferred whose time has come (on every request, and
        when a test asks)."""
        now = self.clock()
        due = [entry for entry in self._deferred if entry[0] <= now]
        self._deferred = [entry for entry in self._deferred if entry[0] > now]
        for _, act in due:
            await act()

    def _violation(self, message: str) -> web.Response:
        self.violations.append(message)
        return web.json_response({"message": message}, status=422)

    def _auth_kind(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.count(".") == 2:
            return "jwt"
        if scheme.lower() in ("token", "bearer") and value in self.tokens:
            return f"installation:{self.tokens[value][0]}"
        if scheme.lower() in ("token", "bearer") and value in self.oauth_flow.tokens:
            return f"user:{self.oauth_flow.tokens[value]}"
        return "none"

    def _check_jwt(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return web.json_response({"message": "A JSON web token is required"}, status=401)
        try:
            claims = jwt.decode(
                value,
                self.public_key_pem,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
                leeway=0,
            )
        except jwt.PyJWTError as exc:
            return web.json_response({"message": f"bad JWT: {exc}"}, status=401)
        now = time.time()
        if str(claims["iss"]) != str(self.app_id):
            return web.json_response({"message": "JWT for another App"}, status=401)
        if claims["exp"] - claims["iat"] > 600 or claims["iat"] > now:
            return web.json_response({"message": "JWT lifetime invalid"}, status=401)
        return None

    def _check_token(self, request: web.Request, repo: str) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        _, _, value = header.partition(" ")
        issued = self.tokens.get(value)
        if issued is None or issued[1] < time.time():
            return web.json_response({"message": "Bad credentials"}, status=401)
        if self.installations.get(repo.lower()) != issued[0]:
            return web.json_response({"message": "Resource not accessible"}, status=403)
        return None

    def _handlers(self) -> dict[str, Callable[..., Awaitable[web.StreamResponse]]]:
        return {
            "GET /app": self._get_app,
            "POST /app/installations/{installation_id}/access_tokens": self._access_token,
            "GET /repos/{owner}/{repo}/installation": self._repo_installation,
            "GET /app/hook/deliveries": self._hook_deliveries,
            "POST /app/hook/deliveries/{delivery_id}/attempts": self._redeliver,
            "GET /repos/{owner}/{repo}/git/ref/{ref}": self._repo_call(self._git_ref),
            "GET /repos/{owner}/{repo}/git/tags/{tag_sha}": self._repo_call(self._git_tag),
            "GET /repos/{owner}/{repo}": self._repo_call(self._get_repo),
            "POST /repos/{owner}/{repo}/deployments": self._repo_call(self._create_deployment),
            "GET /repos/{owner}/{repo}/deployments": self._repo_call(self._list_deployments),
            "POST /repos/{owner}/{repo}/deployments/{deployment_id}/statuses": self._repo_call(
                self._create_status
            ),
            "GET /repos/{owner}/{repo}/deployments/{deployment_id}/statuses": self._repo_call(
                self._list_statuses
            ),
            "POST /repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches": (
                self._repo_call(self._dispatch)
            ),
            "GET /repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs": self._repo_call(
                self._list_runs
            ),
            "GET /repos/{owner}/{repo}/actions/runs/{run_id}": self._repo_call(self._get_run),
            "POST /repos/{owner}/{repo}/actions/runs/{run_id}/cancel": self._repo_call(
                self._cancel_run
            ),
            "POST /repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule": (
                self._repo_call(self._review_protection_rule)
            ),
            "GET /repos/{owner}/{repo}/collaborators/{username}/permission": self._repo_call(
                self._permission
            ),
            "GET /orgs/{org}/teams/{team_slug}/memberships/{username}": self._team_membership,
            "POST /repos/{owner}/{repo}/issues/{issue_number}/comments": self._repo_call(
                self._comment
            ),
            "POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions": self._repo_call(
                self._reaction
            ),
            "GET /repos/{owner}/{repo}/compare/{basehead}": self._repo_call(self._compare),
            # The description also has the path with its halves named; it matches first.
            "GET /repos/{owner}/{repo}/compare/{base}...{head}": self._repo_call(self._compare),
            "GET /repos/{owner}/{repo}/commits/{ref}": self._repo_call(self._get_commit),
            "GET /repos/{owner}/{repo}/pulls": self._repo_call(self._list_pulls),
            "GET /repos/{owner}/{repo}/commits/{commit_sha}/pulls": self._repo_call(
                self._commit_pulls
            ),
            "GET /repos/{owner}/{repo}/issues/{issue_number}/comments": self._repo_call(
                self._list_comments
            ),
            "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}": self._repo_call(
                self._edit_comment
            ),
            "GET /repos/{owner}/{repo}/releases/tags/{tag}": self._repo_call(self._release_by_tag),
            "POST /repos/{owner}/{repo}/releases": self._repo_call(self._create_release),
            "PATCH /repos/{owner}/{repo}/releases/{release_id}": self._repo_call(
                self._edit_release
            ),
            "POST /app-manifests/{code}/conversions": self._manifest_conversion,
            "GET /user": self._authenticated_user,
        }

    def _repo_call(
        self, handler: Callable[..., Awaitable[web.StreamResponse]]
    ) -> Callable[..., Awaitable[web.StreamResponse]]:
        async def checked(
            request: web.Request, params: dict[str, str], body: Any
        ) -> web.StreamResponse:
            repo = f"{params['owner']}/{params['repo']}".lower()
            refused = self._check_token(request, repo)
            if refused is not None:
                return refused
            return await handler(request, params, body, repo)

        return checked

    # --- App endpoints -----------------------------------------------------------------

    async def _get_app(self, request: web.Request, params: dict[str, str], body: Any) -> Any:
        refused = self._check_jwt(request)
        return refused or web.json_response({"id": self.app_id, "slug": "tarmac"})

    async def _access_token(
        self, request: web.Request, params: dict[str, str], body: Any
    ) -> web.StreamResponse:
        refused = self._check_jwt(request)
        if refused is not None:
            return refused
        installation_id = int(params["installation_id"])
        if installation_id not in self.installations.values():
            return web.json_response({"message": "Not Found"}, status=404)
        token = "ghs_" + secrets.token_urlsafe(30)
        expiry = time.time() + self.token_lifetime
        self.tokens[token] = (installation_id, expiry)
        expires_at = datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response({"token": token, "expires_at": expires_at}, status=201)

    async def _repo_installation(
        self, request: web.Request, params: dict[str, str], body: Any
    ) -> web.StreamResponse:
        refused = self._check_jwt(request)
        if refused is not None:
            return refused
        repo = f"{params['owner']}/{params['repo']}".lower()
        installation_id = self.installations.get(repo)
        if installation_id is None:
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response({"id": installation_id, "app_id": self.app_id})

    async def _hook_deliveries(
        self, request: web.Request, params: dict[str, str], body: Any
    ) -> web.StreamResponse:
        refused = self._check_jwt(request)
        if refused is not None:
            return refused
        # Newest first, `per_page` at a time; the Link header's cursor names the next page.
        unknown = set(request.query) - {"per_page", "cursor", "status"}
        per_page = request.query.get("per_page", "30")
        if unknown or not per_page.isdigit() or not 1 <= int(per_page) <= 100:
            return self._violation(f"GET /app/hook/deliveries: bad query {dict(request.query)}")
        items = sorted(self.hook_deliveries, key=lambda d: d["id"], reverse=True)
        cursor = request.query.get("cursor")
        if cursor is not None:
            items = [d for d in items if d["id"] <= int(cursor.removeprefix("v1_"))]
        page, rest = items[: int(per_page)], items[int(per_page) :]
        headers = {}
        if rest:
            query = f"per_page={per_page}&cursor=v1_{rest[0]['id']}"
            headers["Link"] = f'<{self.server_url}/app/hook/deliveries?{query}>; rel="next"'
        return web.json_response(page, headers=headers)

    async def _redeliver(
        self, request: web.Request, params: dict[str, str], body: Any
    ) -> web.StreamResponse:
        refused = self._check_jwt(request)
        if refused is not None:
            return refused
        self.redelivered.append(int(params["delivery_id"]))
        return web.json_response({}, status=202)

    # --- repository endpoints ---------------------------------------------------------

    async def _get_repo(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        return web.json_response({"full_name": repo, "default_branch": self.default_branch})

    async def _git_ref(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        ref = params["ref"]
        target = self.refs.get((repo, ref))
        if target is None:
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response({"ref": f"refs/{ref}", "object": target})

    async def _git_tag(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        commit = self.tag_objects.get((repo, params["tag_sha"]))
        if commit is None:
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response(
            {"sha": params["tag_sha"], "object": {"type": "commit", "sha": commit}}
        )

    async def _create_deployment(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        deployment = {
            "id": next(self._ids),
            "sha": body["ref"],
            "ref": body["ref"],
            "environment": body.get("environment", "production"),
            "payload": body.get("payload", {}),
            "production_environment": body.get("production_environment"),
            "auto_merge": body.get("auto_merge", True),
            "required_contexts": body.get("required_contexts"),
            "description": body.get("description"),
        }
        self.deployments.setdefault(repo, []).append(deployment)
        self.statuses[deployment["id"]] = []
        return web.json_response(deployment, status=201)

    async def _list_deployments(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        found = [
            d
            for d in reversed(self.deployments.get(repo, []))
            if all(
                str(d.get(key)) == request.query[key]
                for key in ("sha", "environment")
                if key in request.query
            )
        ]
        return web.json_response(found)

    async def _create_status(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        deployment_id = int(params["deployment_id"])
        if deployment_id not in self.statuses:
            return web.json_response({"message": "Not Found"}, status=404)
        status = {"id": next(self._ids), **body}
        self.statuses[deployment_id].append(status)
        return web.json_response(status, status=201)

    async def _list_statuses(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        deployment_id = int(params["deployment_id"])
        if deployment_id not in self.statuses:
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response(list(reversed(self.statuses[deployment_id])))

    async def _dispatch(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        workflow = params["workflow_id"]
        inputs = dict(body.get("inputs") or {})
        template = self.run_names.get(workflow)
        title = (
            render_run_name(template, inputs)
            if template
            else self.workflow_names.get(workflow, workflow)
        )
        run = Run(
            id=next(self._ids),
            repo=repo,
            workflow=workflow,
            ref=body["ref"],
            inputs=inputs,
            title=title,
            created_at=self.clock(),
        )
        self.runs[run.id] = run
        if not body.get("return_run_details"):
            return web.Response(status=204)
        api = f"{self.server_url}/repos/{repo}/actions/runs/{run.id}"
        html = f"https://github.com/{repo}/actions/runs/{run.id}"
        return web.json_response(
            {"workflow_run_id": run.id, "run_url": api, "html_url": html}, status=200
        )

    def _run_json(self, run: Run) -> dict[str, Any]:
        at = run.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        api = f"{self.server_url}/repos/{run.repo}/actions/runs/{run.id}"
        return {
            "id": run.id,
            "name": self.workflow_names.get(run.workflow, run.workflow),
            "display_title": run.title,
            "event": run.event,
            "status": run.status,
            "conclusion": run.conclusion,
            "head_sha": run.head_sha,
            "head_branch": run.ref,
            "path": f".github/workflows/{run.workflow}",
            "run_number": run.id,
            "run_attempt": 1,
            "url": api,
            "html_url": f"https://github.com/{run.repo}/actions/runs/{run.id}",
            "cancel_url": f"{api}/cancel",
            "created_at": at,
            "updated_at": at,
            "run_started_at": at,
            "pull_requests": [],
        }

    async def _list_runs(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        """GET …/actions/workflows/{workflow_id}/runs: newest first, `per_page` a page, only
        the runs created `list_lag` seconds ago or more."""
        query = request.query
        allowed = {
            "actor", "branch", "event", "status", "per_page", "page", "created",
            "exclude_pull_requests", "check_suite_id", "head_sha",
        }  # fmt: skip
        unplayed = set(query) - {"event", "created", "head_sha", "per_page", "page"}
        if set(query) - allowed or unplayed - {"exclude_pull_requests"}:
            return self._violation(f"GET …/runs: query the fake does not play {dict(query)}")
        per_page, page = int(query.get("per_page", "30")), int(query.get("page", "1"))
        if not 1 <= per_page <= 100 or page < 1:
            return self._violation(f"GET …/runs: bad page {dict(query)}")
        created = _created_filter(query["created"]) if "created" in query else None
        if "created" in query and created is None:
            return self._violation(f"GET …/runs: created={query['created']!r} is not played")
        listed_before = self.clock() - timedelta(seconds=self.list_lag)
        found = [
            run
            for run in self.runs.values()
            if run.repo == repo
            and run.workflow == params["workflow_id"]
            and run.created_at <= listed_before
            and ("event" not in query or run.event == query["event"])
            and ("head_sha" not in query or run.head_sha == query["head_sha"])
            and (created is None or created(run.created_at))
        ]
        found.sort(key=lambda run: (run.created_at, run.id), reverse=True)
        shown = found[(page - 1) * per_page : page * per_page]
        headers = {}
        last = max(1, -(-len(found) // per_page))
        if page < last:
            links = [("next", page + 1), ("last", last)]
            headers["Link"] = ", ".join(
                f'<{request.url.update_query(page=str(number))}>; rel="{rel}"'
                for rel, number in links
            )
        return web.json_response(
            {"total_count": len(found), "workflow_runs": [self._run_json(r) for r in shown]},
            headers=headers,
        )

    async def _get_run(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        run = self.runs.get(int(params["run_id"]))
        if run is None or run.repo != repo:
            return web.json_response({"message": "Not Found"}, status=404)
        return web.json_response(self._run_json(run))

    async def _cancel_run(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        run = self.runs.get(int(params["run_id"]))
        if run is None or run.repo != repo:
            return web.json_response({"message": "Not Found"}, status=404)
        if run.status == "completed":
            return web.json_response({"message": "Cannot cancel a completed run"}, status=409)
        run.canceled = True
        return web.json_response({}, status=202)

    async def _review_protection_rule(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        """An App's answer to its own protection rule for one environment of a run: 204 for a
        job waiting for it; 422 when none waits (answered already, or never held)."""
        run = self.runs.get(int(params["run_id"]))
        if run is None or run.repo != repo:
            return web.json_response({"message": "Not Found"}, status=404)
        comment = body.get("comment")
        if comment is not None and len(comment) > 1024:  # GitHub's documented limit
            return self._violation(f"protection rule comment of {len(comment)} characters")
        if "state" not in body:
            return self._violation("status reports (an answer without a state) are not played")
        key = (repo, run.id, body["environment_name"])
        if self.protection_gates.get(key) != "waiting":
            message = (
                f"No pending custom deployment requests in workflow run `{run.id}` to approve "
                "or reject"
            )
            return web.json_response({"message": message}, status=422)
        self.protection_gates[key] = body["state"]
        self.protection_reviews.append({"repo": repo, "run_id": run.id, **body})
        return web.Response(status=204)

    async def _permission(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        granted = self.permissions.get((repo, params["username"].lower()))
        if granted is None:
            return web.json_response({"permission": "none", "role_name": "none"})
        permission, role_name = granted
        return web.json_response(
            {
                "permission": permission,
                "role_name": role_name,
                "user": {"login": params["username"]},
            }
        )

    async def _team_membership(
        self, request: web.Request, params: dict[str, str], body: Any
    ) -> web.StreamResponse:
        """As GitHub answers an installation: only for the organisation it is installed on,
        and only with the `members` permission; 404 for someone not in the team."""
        _, _, value = request.headers.get("Authorization", "").partition(" ")
        issued = self.tokens.get(value)
        if issued is None or issued[1] < time.time():
            return web.json_response({"message": "Bad credentials"}, status=401)
        org = params["org"].lower()
        installed_on = {
            repo.split("/")[0] for repo, i in self.installations.items() if i == issued[0]
        }
        if org not in installed_on or not self.members_permission:
            return web.json_response(
                {"message": "Resource not accessible by integration"}, status=403
            )
        team = f"{org}/{params['team_slug'].lower()}"
        state = self.team_memberships.get((team, params["username"].lower()))
        if state is None:
            return web.json_response({"message": "Not Found"}, status=404)
        url = f"{self.server_url}/organizations/1/team/2/memberships/{params['username']}"
        return web.json_response({"url": url, "role": "member", "state": state})

    async def _comment(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        at = _timestamp(self.clock())
        comment = {
            "id": next(self._ids),
            "repo": repo,
            "issue_number": int(params["issue_number"]),
            "body": body["body"],
            # Made with an installation's token: the App's bot user, and the App named.
            "user": {"login": f"{APP_SLUG}[bot]", "type": "Bot"},
            "performed_via_github_app": {"id": self.app_id, "slug": APP_SLUG},
            "created_at": at,
            "updated_at": at,
        }
        self.comments.append(comment)
        return web.json_response(comment, status=201)

    def comment(self, comment_id: int) -> dict[str, Any] | None:
        return next((c for c in self.comments if c["id"] == comment_id), None)

    def delete_comment(self, comment_id: int) -> None:
        """Someone deletes a comment on GitHub."""
        self.comments = [c for c in self.comments if c["id"] != comment_id]

    async def _list_comments(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        """GET …/issues/{issue_number}/comments: oldest first, those updated at or after
        `since`, `per_page` a page (30 unless asked), with a Link to the next page."""
        query = request.query
        since = _parse_timestamp(query["since"]) if "since" in query else None
        per_page, page = int(query.get("per_page", "30")), int(query.get("page", "1"))
        found = [
            c
            for c in self.comments
            if c["repo"] == repo
            and c["issue_number"] == int(params["issue_number"])
            and (since is None or _parse_timestamp(c["updated_at"]) >= since)
        ]
        shown = found[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(found):
            headers["Link"] = f'<{request.url.update_query(page=str(page + 1))}>; rel="next"'
        return web.json_response(shown, headers=headers)

    async def _edit_comment(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        comment = self.comment(int(params["comment_id"]))
        if comment is None or comment["repo"] != repo:
            return web.json_response({"message": "Not Found"}, status=404)
        comment.update(body=body["body"], updated_at=_timestamp(self.clock()))
        return web.json_response(comment)

    # --- releases ----------------------------------------------------------------------

    def add_release(self, repo: str, tag: str, body: str, *, by_a_person: bool = True) -> None:
        """A release someone made on GitHub."""
        author = {"login": "octocat", "type": "User"} if by_a_person else _APP_AUTHOR
        self.releases.append(
            {"id": next(self._ids), "repo": repo.lower(), "tag_name": tag, "name": tag,
             "body": body, "draft": False, "author": author}
        )  # fmt: skip

    def releases_of(self, repo: str) -> list[dict[str, Any]]:
        return [r for r in self.releases if r["repo"] == repo.lower()]

    async def _release_by_tag(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        """Published releases only, as GitHub serves this endpoint."""
        for release in self.releases_of(repo):
            if release["tag_name"] == params["tag"] and not release["draft"]:
                return web.json_response(release)
        return web.json_response({"message": "Not Found"}, status=404)

    async def _create_release(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        if any(r["tag_name"] == body["tag_name"] for r in self.releases_of(repo)):
            error = {"resource": "Release", "code": "already_exists", "field": "tag_name"}
            return web.json_response(
                {"message": "Validation Failed", "errors": [error]}, status=422
            )
        if (repo, f"tags/{body['tag_name']}") not in self.refs:
            return self._violation(f"POST …/releases: tag {body['tag_name']!r} does not exist")
        release = {
            "id": next(self._ids),
            "repo": repo,
            "tag_name": body["tag_name"],
            "name": body.get("name"),
            "body": body.get("body"),
            "draft": bool(body.get("draft", False)),
            "author": _APP_AUTHOR,
        }
        self.releases.append(release)
        return web.json_response(release, status=201)

    async def _edit_release(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        found = [r for r in self.releases_of(repo) if r["id"] == int(params["release_id"])]
        if not found:
            return web.json_response({"message": "Not Found"}, status=404)
        found[0].update({key: body[key] for key in ("name", "body") if key in body})
        return web.json_response(found[0])

    async def _reaction(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        reaction = {
            "comment_id": int(params["comment_id"]),
            "repo": repo,
            "content": body["content"],
        }
        if reaction in self.reactions:
            return web.json_response({"id": 1, **reaction}, status=200)
        self.reactions.append(reaction)
        return web.json_response({"id": next(self._ids), **reaction}, status=201)

    # --- history: compare, commits, pull requests ---------------------------------------

    def _paged(
        self, request: web.Request, items: list[Any], *, default: int = 30, most: int = 100
    ) -> tuple[list[Any], dict[str, str]] | web.Response:
        """`items` cut to the request's page, with GitHub's Link header for the next one."""
        per_page_text = request.query.get("per_page", str(default))
        page_text = request.query.get("page", "1")
        if not per_page_text.isdigit() or not page_text.isdigit() or int(page_text) < 1:
            return self._violation(f"GET {request.path}: bad per_page or page")
        per_page, page = min(int(per_page_text), most), int(page_text)
        shown = items[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(items):
            headers["Link"] = f'<{request.url.update_query(page=str(page + 1))}>; rel="next"'
        return shown, headers

    def _known_commit(self, repo: str, sha: str) -> bool:
        history = self.histories.get(repo)
        return history is not None and sha in history.commits

    async def _compare(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        if "basehead" in params:
            base, dots, head = params["basehead"].partition("...")
        else:
            base, dots, head = params["base"], "...", params["head"]
        if not dots or not self._known_commit(repo, base) or not self._known_commit(repo, head):
            return web.json_response({"message": "Not Found"}, status=404)
        compared = self.histories[repo].compare(base, head)
        if "per_page" not in request.query and "page" not in request.query:
            # Without paging, GitHub lists the newest 250 commits only.
            compared["commits"] = compared["commits"][-250:]
            return web.json_response(compared)
        paged = self._paged(request, compared["commits"], default=250, most=100)
        if isinstance(paged, web.Response):
            return paged
        compared["commits"], headers = paged
        return web.json_response(compared, headers=headers)

    async def _get_commit(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        if not self._known_commit(repo, params["ref"]):
            return web.json_response({"message": "No commit found for SHA"}, status=422)
        history = self.histories[repo]
        commit = history.commits[params["ref"]]
        paged = self._paged(request, history.files_json(commit), default=FILES_PAGE, most=300)
        if isinstance(paged, web.Response):
            return paged
        files, headers = paged
        return web.json_response({**history.commit_json(commit), "files": files}, headers=headers)

    async def _list_pulls(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        query = dict(request.query)
        wanted = {"state": "closed", "sort": "updated", "direction": "desc"}
        if any(query.get(key) != value for key, value in wanted.items()):
            return self._violation(f"GET …/pulls: only {wanted} is played, not {query}")
        history = self.histories.get(repo)
        paged = self._paged(request, history.closed_by_update() if history else [])
        if isinstance(paged, web.Response):
            return paged
        shown, headers = paged
        return web.json_response(shown, headers=headers)

    async def _commit_pulls(
        self, request: web.Request, params: dict[str, str], body: Any, repo: str
    ) -> Any:
        if not self._known_commit(repo, params["commit_sha"]):
            return web.json_response({"message": "No commit found for SHA"}, status=422)
        return web.json_response(self.histories[repo].pulls_of_commit(params["commit_sha"]))

    # --- the web half: registering an App from a manifest --------------------------------
    #
    # GitHub's "register a new GitHub App" pages (github.com/settings/apps/new, and
    # /organizations/{org}/settings/apps/new), which take the manifest flow's form POST, show a
    # page with a "Create GitHub App" button, and send the browser to the manifest's
    # redirect_url with a code; the REST half (POST /app-manifests/{code}/conversions) is in
    # `_handlers`. A manifest GitHub would refuse is recorded as a violation, like a REST call.
    # Served by `web_app()` on its own address, which also answers the REST API under /api/v3
    # as GitHub Enterprise Server does.

    @functools.cached_property
    def manifest_flow(self) -> ManifestFlow:
        return ManifestFlow()

    def web_app(self) -> web.Application:
        app = web.Application(middlewares=[self._rate_limit_headers])
        app.router.add_post("/settings/apps/new", self._new_app_page)
        app.router.add_post("/organizations/{org}/settings/apps/new", self._new_app_page)
        app.router.add_post("/settings/apps", self._create_app)
        app.router.add_post("/organizations/{org}/settings/apps", self._create_app)
        app.router.add_get("/login/oauth/authorize", self._oauth_authorize)
        app.router.add_post("/login/oauth/access_token", self._oauth_access_token)
        app.router.add_route("*", "/api/v3/{tail:.*}", self._enterprise_api)
        return app

    async def _enterprise_api(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        return await self._handle(request.clone(rel_url=URL(path).with_query(request.query)))

    async def _new_app_page(self, request: web.Request) -> web.Response:
        flow = self.manifest_flow
        account = request.match_info.get("org") or flow.user
        form = await request.post()
        raw = form.get("manifest")
        try:
            manifest = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            manifest = None
        if not isinstance(manifest, dict):
            return self._web_violation(f"{request.path}: the form's manifest is not a JSON object")
        problems = self._manifest_problems(manifest)
        if problems:
            return self._web_violation(f"{request.path}: manifest: " + "; ".join(problems))
        pending = PendingApp(
            id=secrets.token_hex(8),
            account=account,
            organization="org" in request.match_info,
            manifest=manifest,
            state=request.query.get("state"),
        )
        flow.pending[pending.id] = pending
        flow.received.append(pending)
        target = (
            f"/organizations/{account}/settings/apps" if pending.organization else "/settings/apps"
        )
        name = html.escape(str(manifest.get("name", "")))
        page = f"""<!doctype html>
<html><head><title>Create GitHub App</title></head><body>
<h1>Create GitHub App for {html.escape(account)}</h1>
<form method="post" action="{target}">
<input type="hidden" name="registration" value="{pending.id}">
<label>GitHub App name <input name="name" value="{name}"></label>
<button type="submit">Create GitHub App for {html.escape(account)}</button>
</form></body></html>"""
        return web.Response(text=page, content_type="text/html")

    def _manifest_problems(self, manifest: dict[str, Any]) -> list[str]:
        """What GitHub would refuse in a manifest (its documented parameters)."""
        problems = [f"unknown parameter {key!r}" for key in manifest if key not in MANIFEST_KEYS]
        if not _is_web_url(manifest.get("url")):
            problems.append("url is required: the App's homepage, a full URL")
        for key in ("redirect_url", "setup_url"):
            if key in manifest and not _is_web_url(manifest[key]):
                problems.append(f"{key} must be a full URL")
        callbacks = manifest.get("callback_urls", [])
        listed = isinstance(callbacks, list) and len(callbacks) <= 10
        if not listed or not all(_is_web_url(url) for url in callbacks):
            problems.append("callback_urls must be a list of full URLs (at most 10)")
        hook = manifest.get("hook_attributes")
        if hook is not None:
            if not isinstance(hook, dict) or not _is_web_url(hook.get("url")):
                problems.append("hook_attributes.url is required: the webhook URL")
            elif set(hook) - {"url", "active"} or not isinstance(hook.get("active", True), bool):
                problems.append("hook_attributes takes url and active (a boolean)")
        name = manifest.get("name")
        if name is not None and not (isinstance(name, str) and 0 < len(name) <= 34):
            problems.append("name must be 1 to 34 characters")
        for key in ("public", "request_oauth_on_install", "setup_on_update"):
            if key in manifest and not isinstance(manifest[key], bool):
                problems.append(f"{key} must be a boolean")
        permissions = manifest.get("default_permissions", {})
        known = self.rest.schema("app-permissions")["properties"]
        if not isinstance(permissions, dict):
            problems.append("default_permissions must map permissions to read or write")
            permissions = {}
        for permission, level in permissions.items():
            if permission not in known or level not in known[permission].get("enum", []):
                problems.append(f"default_permissions: {permission}: {level!r} is not allowed")
        events = manifest.get("default_events", [])
        webhook_events = set(webhook_event_names())
        for event in events if isinstance(events, list) else [events]:
            if event in SENT_TO_EVERY_APP:
                problems.append(f"default_events: {event} is sent to every App, not subscribed")
            elif event not in webhook_events:
                problems.append(f"default_events: no such event {event!r}")
            elif EVENT_PERMISSIONS.get(event, "metadata") not in permissions:
                needed = EVENT_PERMISSIONS[event]
                problems.append(f"default_events: {event} needs the {needed} permission")
        return problems

    async def _create_app(self, request: web.Request) -> web.StreamResponse:
        flow = self.manifest_flow
        form = await request.post()
        pending = flow.pending.pop(str(form.get("registration", "")), None)
        if pending is None or pending.organization != ("org" in request.match_info):
            return self._web_violation(f"{request.path}: no such registration under way")
        name = str(form.get("name", "")).strip()
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        if not 0 < len(name) <= 34 or any(app["slug"] == slug for app in flow.created):
            flow.pending[pending.id] = pending  # GitHub shows the form again: another name
            return web.Response(status=422, text=f"Name {name!r} is taken or not allowed")
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        app = self._registered_app(pending, name, slug, key)
        flow.created.append(app)
        code = secrets.token_hex(10)
        flow.codes[code] = (app, time.monotonic() + flow.code_lifetime)
        redirect = pending.manifest.get("redirect_url")
        if redirect is None:
            return web.Response(text=f"GitHub App {slug} created", content_type="text/html")
        query = {"code": code, **({"state": pending.state} if pending.state is not None else {})}
        raise web.HTTPFound(str(URL(redirect).update_query(query)))

    def _registered_app(
        self, pending: PendingApp, name: str, slug: str, key: rsa.RSAPrivateKey
    ) -> dict[str, Any]:
        """The App as POST /app-manifests/{code}/conversions shows it."""
        app_id = next(self._ids)
        kind = "Organization" if pending.organization else "User"
        account = pending.account
        api = self.server_url
        manifest = pending.manifest
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,  # GitHub hands out PKCS#1
            serialization.NoEncryption(),
        ).decode("ascii")
        return {
            "id": app_id,
            "slug": slug,
            "node_id": f"A_kwDO{app_id:08d}",
            "client_id": "Iv23li" + secrets.token_hex(7),
            "owner": {
                "login": account,
                "id": 7000 + len(account),
                "node_id": f"O_kgDO{len(account):08d}",
                "avatar_url": f"https://avatars.githubusercontent.com/u/{7000 + len(account)}",
                "gravatar_id": "",
                "url": f"{api}/users/{account}",
                "html_url": f"{self.manifest_flow.web_url}/{account}",
                "followers_url": f"{api}/users/{account}/followers",
                "following_url": f"{api}/users/{account}/following{{/other_user}}",
                "gists_url": f"{api}/users/{account}/gists{{/gist_id}}",
                "starred_url": f"{api}/users/{account}/starred{{/owner}}{{/repo}}",
                "subscriptions_url": f"{api}/users/{account}/subscriptions",
                "organizations_url": f"{api}/users/{account}/orgs",
                "repos_url": f"{api}/users/{account}/repos",
                "events_url": f"{api}/users/{account}/events{{/privacy}}",
                "received_events_url": f"{api}/users/{account}/received_events",
                "type": kind,
                "site_admin": False,
            },
            "name": name,
            "description": manifest.get("description", ""),
            "external_url": manifest["url"],
            "html_url": f"{self.manifest_flow.web_url}/apps/{slug}",
            "created_at": now,
            "updated_at": now,
            "permissions": {"metadata": "read", **manifest.get("default_permissions", {})},
            "events": list(manifest.get("default_events", [])),
            "client_secret": secrets.token_hex(20),
            "webhook_secret": secrets.token_hex(20) if "hook_attributes" in manifest else None,
            "pem": pem,
        }

    async def _manifest_conversion(
        self, request: web.Request, params: dict[str, str], body: Any
    ) -> web.StreamResponse:
        flow = self.manifest_flow
        found = flow.codes.pop(params["code"], None)
        if found is None or found[1] < time.monotonic():
            return web.json_response(
                {
                    "message": "Not Found",
                    "documentation_url": "https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest",
                    "status": "404",
                },
                status=404,
            )
        app = found[0]
        flow.exchanged.append(params["code"])
        operation = self.rest.operation("POST", "/app-manifests/{code}/conversions")
        assert operation is not None
        problem = self.rest.response_problem(operation, 201, app)
        if problem is not None:
            return self._violation(f"the fake's own conversion answer: {problem}")
        # From now on the App's JWTs are the ones this fake takes (signed with its new key).
        key = serialization.load_pem_private_key(app["pem"].encode(), password=None)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.app_id = app["id"]
        self.public_key_pem = public.decode("ascii")
        return web.json_response(app, status=201)

    # --- GitHub's OAuth web flow for the App (user access tokens) -------------------------
    # Not REST, so checked by hand, strictly: the client id and secret, the redirect_uri
    # (one of the App's callback URLs, and the same at both steps), the state, PKCE (S256),
    # a code used once and within its lifetime. The person "signed in to github.com" is
    # `oauth_flow.user`; having authorized the App before, they are sent back at once.

    @functools.cached_property
    def oauth_flow(self) -> OAuthFlow:
        return OAuthFlow()

    def add_user(self, login: str) -> int:
        """A GitHub user (their id), whom `oauth_flow.user` may name."""
        return self.users.setdefault(login, 5_000_000 + len(self.users))

    async def _oauth_authorize(self, request: web.Request) -> web.StreamResponse:
        flow = self.oauth_flow
        query = request.query
        problems = []
        if query.get("client_id") != flow.client_id:
            problems.append("client_id is not the App's")
        redirect = query.get("redirect_uri") or (flow.callback_urls or [""])[0]
        if not any(_under_callback(redirect, url) for url in flow.callback_urls):
            problems.append(f"redirect_uri {redirect!r} is not under a callback URL")
        if not query.get("state"):
            problems.append("no state (Tarmac always sends one)")
        if not query.get("code_challenge") or query.get("code_challenge_method") != "S256":
            problems.append("no PKCE code_challenge with code_challenge_method=S256")
        if flow.user is None or flow.user not in self.users:
            problems.append("no one is signed in to the fake's github.com")
        if problems:
            return self._web_violation("/login/oauth/authorize: " + "; ".join(problems))
        assert flow.user is not None
        back = {"state": query["state"]}
        if flow.decline:
            raise web.HTTPFound(str(URL(redirect).update_query(error="access_denied", **back)))
        code = secrets.token_hex(10)
        flow.codes[code] = OAuthCode(
            login=flow.user,
            redirect_uri=query.get("redirect_uri"),
            challenge=query["code_challenge"],
            expires=time.monotonic() + flow.code_lifetime,
        )
        flow.authorized.append(flow.user)
        raise web.HTTPFound(str(URL(redirect).update_query(code=code, **back)))

    async def _oauth_access_token(self, request: web.Request) -> web.StreamResponse:
        flow = self.oauth_flow
        if "application/json" not in request.headers.get("Accept", ""):
            return self._web_violation("/login/oauth/access_token: no Accept: application/json")
        form = await request.post()
        fields = {key: str(value) for key, value in form.items()}
        if set(fields) - OAUTH_TOKEN_FIELDS:
            unknown = sorted(set(fields) - OAUTH_TOKEN_FIELDS)
            return self._web_violation(f"/login/oauth/access_token: unknown fields {unknown}")
        if (fields.get("client_id"), fields.get("client_secret")) != (
            flow.client_id,
            flow.client_secret,
        ):
            return _oauth_error("incorrect_client_credentials")
        code = flow.codes.pop(fields.get("code", ""), None)
        if code is None or code.expires < time.monotonic():
            return _oauth_error("bad_verification_code")
        if fields.get("redirect_uri") != code.redirect_uri:
            return _oauth_error("redirect_uri_mismatch")
        verifier = fields.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
            return _oauth_error("bad_verification_code")
        token = "ghu_" + secrets.token_hex(18)
        flow.tokens[token] = code.login
        return web.json_response(
            {
                "access_token": token,
                "expires_in": 28800,
                "refresh_token": "ghr_" + secrets.token_hex(30),
                "refresh_token_expires_in": 15897600,
                "scope": "",
                "token_type": "bearer",
            }
        )

    async def _authenticated_user(
        self, request: web.Request, params: dict[str, str], body: Any
    ) -> web.StreamResponse:
        _, _, value = request.headers.get("Authorization", "").partition(" ")
        login = self.oauth_flow.tokens.get(value)
        if login is None:
            return web.json_response({"message": "Bad credentials"}, status=401)
        user = self._public_user(login, self.users[login])
        operation = self.rest.operation("GET", "/user")
        assert operation is not None
        problem = self.rest.response_problem(operation, 200, user)
        if problem is not None:
            return self._violation(f"the fake's own GET /user answer: {problem}")
        return web.json_response(user)

    def _public_user(self, login: str, user_id: int) -> dict[str, Any]:
        api = self.server_url
        return {
            "login": login,
            "id": user_id,
            "user_view_type": "public",
            "node_id": f"U_kgDO{user_id:08d}",
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}",
            "gravatar_id": "",
            "url": f"{api}/users/{login}",
            "html_url": f"https://github.com/{login}",
            "followers_url": f"{api}/users/{login}/followers",
            "following_url": f"{api}/users/{login}/following{{/other_user}}",
            "gists_url": f"{api}/users/{login}/gists{{/gist_id}}",
            "starred_url": f"{api}/users/{login}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/users/{login}/subscriptions",
            "organizations_url": f"{api}/users/{login}/orgs",
            "repos_url": f"{api}/users/{login}/repos",
            "events_url": f"{api}/users/{login}/events{{/privacy}}",
            "received_events_url": f"{api}/users/{login}/received_events",
            "type": "User",
            "site_admin": False,
            "name": None,
            "company": None,
            "blog": "",
            "location": None,
            "email": None,
            "hireable": None,
            "bio": None,
            "public_repos": 0,
            "public_gists": 0,
            "followers": 0,
            "following": 0,
            "created_at": "2020-01-01T00:00:00Z",
            "updated_at": "2020-01-01T00:00:00Z",
        }

    def _web_violation(self, message: str) -> web.Response:
        self.violations.append(message)
        return web.Response(status=422, text=message)


def _timestamp(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def expiry_in(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


# --- the manifest flow's state and rules ---------------------------------------------------

# GitHub's documented App manifest parameters.
MANIFEST_KEYS = frozenset(
    {
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "callback_urls",
        "setup_url",
        "description",
        "public",
        "default_events",
        "default_permissions",
        "request_oauth_on_install",
        "setup_on_update",
    }
)
# Events GitHub sends every App unasked, which a manifest may not list ("Default events
# unsupported: installation and installation_repositories", as GitHub words its refusal).
# github_app_authorization is "received by default" and "cannot unsubscribe" (GitHub's
# webhook reference): refused here the same way (not seen refused by GitHub itself).
SENT_TO_EVERY_APP = frozenset(
    {"installation", "installation_repositories", "github_app_authorization"}
)
# The permission GitHub wants before an App may subscribe to an event (those Tarmac uses and
# their neighbours; any other event needs metadata, which every App has).
EVENT_PERMISSIONS = {
    "create": "contents",
    "delete": "contents",
    "push": "contents",
    "release": "contents",
    "workflow_run": "actions",
    "workflow_job": "actions",
    "issue_comment": "issues",
    "issues": "issues",
    "pull_request": "pull_requests",
    "deployment": "deployments",
    "deployment_status": "deployments",
    "deployment_protection_rule": "deployments",
}


@dataclass
class PendingApp:
    """A manifest GitHub took, waiting for its "Create GitHub App" click."""

    id: str
    account: str
    organization: bool
    manifest: dict[str, Any]
    state: str | None


@dataclass
class ManifestFlow:
    web_url: str = ""  # where web_app() is served
    user: str = "octocat"  # who is signed in to the fake's web pages
    code_lifetime: float = 3600.0  # GitHub: an hour to exchange the code
    received: list[PendingApp] = field(default_factory=list)  # every manifest posted
    pending: dict[str, PendingApp] = field(default_factory=dict)
    created: list[dict[str, Any]] = field(default_factory=list)  # the Apps, as exchanged
    codes: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)
    exchanged: list[str] = field(default_factory=list)  # codes, in the order exchanged


def _is_web_url(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^https?://[^/\s?#]+", value) is not None


# --- the OAuth web flow's state ---------------------------------------------------------

OAUTH_TOKEN_FIELDS = frozenset(
    {"client_id", "client_secret", "code", "redirect_uri", "code_verifier", "repository_id"}
)


def _oauth_error(code: str) -> web.Response:
    """GitHub answers an unusable exchange with 200 and an error (not a 4xx)."""
    return web.json_response(
        {
            "error": code,
            "error_description": code.replace("_", " "),
            "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors",
        }
    )


def _under_callback(redirect: str, callback: str) -> bool:
    """GitHub's rule: the same scheme, host and port as a callback URL, and a path under its."""
    wanted, given = URL(callback), URL(redirect)
    origin = (wanted.scheme, wanted.host, wanted.port)
    return (given.scheme, given.host, given.port) == origin and given.path.startswith(wanted.path)


@dataclass
class OAuthCode:
    login: str
    redirect_uri: str | None
    challenge: str
    expires: float


@dataclass
class OAuthFlow:
    client_id: str = "Iv23liFakeTarmacApp"
    client_secret: str = field(default_factory=lambda: "fake-oauth-secret-" + secrets.token_hex(12))
    callback_urls: list[str] = field(default_factory=list)
    user: str | None = None  # who is signed in to the fake's github.com
    decline: bool = False  # they press "Cancel" on the authorization page
    code_lifetime: float = 600.0  # GitHub: ten minutes
    codes: dict[str, OAuthCode] = field(default_factory=dict)
    authorized: list[str] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)  # user access token -> login
