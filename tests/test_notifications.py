"""Notifications (issue 14 part 4): every transition reaches a Slack receiver and a signed
webhook receiver (real aiohttp servers on loopback) once, with or without a GitHub App; a
receiver that fails gets everything afterwards, in order, and holds up neither GitHub's calls
nor the other receiver; secrets stay out of logs and of the outbox."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select

from api.keys import SERVICE
from api.schemas import NotificationBody
from bot.config.projects_file import ProjectsFileError, load_projects_file
from bot.github.outbound.worker import OutboxWorker
from bot.notify.delivery import receiver_answer
from bot.notify.messages import slack_body
from bot.notify.signing import verify
from bot.storage.db import Database
from bot.storage.models import OutboxItem
from bot.storage.outbox import Action, RefusedForGood, RetryLater
from tests.conftest import PROJECTS_YAML, SHA_A, Api, TestClock, Webhooks
from tests.fake_github import FakeGitHub
from tests.leak_check import register_secret
from tests.processes import eventually
from tests.test_github_comments import send_comment
from tests.test_github_tags import accepted
from tests.test_github_workflow_runs import run_event, tagged_rc

SLACK_PATH_SECRET = register_secret("slack-path-secret-4f1a9c2e7b33")
HOOK_SECRET = register_secret("tarmac-hook-secret-8d2b6e1f0a77")
SLACK_VARIABLE = "TEST_SLACK_DEPLOYS_URL"
HOOK_VARIABLE = "TEST_TARMAC_HOOK_SECRET"


@dataclass
class Receivers:
    """A Slack incoming webhook and a generic webhook receiver, on one real loopback server:
    what each got, and what each answers (`failing`: a status to answer instead of 200)."""

    slack: list[dict[str, Any]] = field(default_factory=list)
    hooks: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    failing: dict[str, int] = field(default_factory=dict)
    # A receiver that takes the request and answers only once its event is set.
    hanging: dict[str, asyncio.Event] = field(default_factory=dict)
    waiting: set[str] = field(default_factory=set)
    refused: dict[str, int] = field(default_factory=dict)  # how many each answered failing
    base: str = ""

    @property
    def slack_url(self) -> str:
        return f"{self.base}/services/T0000/B0000/{SLACK_PATH_SECRET}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/services/T0000/B0000/{secret}", self._slack)
        app.router.add_post("/hook", self._hook)
        return app

    def _answer(self, name: str) -> web.Response | None:
        status = self.failing.get(name)
        if status is None:
            return None
        self.refused[name] = self.refused.get(name, 0) + 1
        return web.Response(status=status, text="no")

    async def _slack(self, request: web.Request) -> web.Response:
        assert request.match_info["secret"] == SLACK_PATH_SECRET
        failed = self._answer("slack")
        if failed is not None:
            return failed
        self.slack.append(await request.json())
        return web.Response(text="ok")

    async def _hook(self, request: web.Request) -> web.Response:
        hang = self.hanging.get("hook")
        if hang is not None:
            self.waiting.add("hook")
            await hang.wait()
        failed = self._answer("hook")
        if failed is not None:
            return failed
        self.hooks.append((dict(request.headers), await request.read()))
        return web.Response(status=204)

    def hook_events(self) -> list[str]:
        return [json.loads(body)["event"] for _, body in self.hooks]

    def slack_texts(self) -> list[str]:
        return [message["text"] for message in self.slack]


def notifying_yaml(receivers: Receivers, base: str = PROJECTS_YAML) -> str:
    """Backend tells a Slack channel and a webhook of everything, and its production
    environment one more webhook of its successes alone."""
    project = f"""    notifications:
      - name: deploys
        slack: {{url_env: {SLACK_VARIABLE}}}
      - name: audit
        webhook: {{url: "{receivers.base}/hook", secret_env: {HOOK_VARIABLE}}}
"""
    production = f"""        timeout_minutes: 30
        notifications:
          - name: prod-successes
            webhook: {{url: "{receivers.base}/hook?only=successes", secret_env: {HOOK_VARIABLE}}}
            events: [deployment.succeeded]
"""
    text = base.replace(
        "    build:\n      workflow: build.yml\n",
        project + "    build:\n      workflow: build.yml\n",
        1,
    )
    return text.replace("        timeout_minutes: 30\n", production, 1)


async def start_receivers(aiohttp_server: Any) -> Receivers:
    found = Receivers()
    # The receiver is not Tarmac: its access log (the URL, secret and all) is not kept.
    server = await aiohttp_server(found.app(), access_log=None)
    found.base = str(server.make_url("")).rstrip("/")
    return found


@pytest.fixture
async def receivers(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> Receivers:
    found = await start_receivers(aiohttp_server)
    monkeypatch.setenv(SLACK_VARIABLE, found.slack_url)
    monkeypatch.setenv(HOOK_VARIABLE, HOOK_SECRET)
    return found


@pytest.fixture
def projects_file(tmp_path: Path, receivers: Receivers) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(notifying_yaml(receivers))
    return path


def ledger_worker(api: Api) -> OutboxWorker:
    worker = api.client.app[SERVICE].outbox_worker
    assert worker is not None, "without a GitHub App the worker runs for the notifications"
    return worker


def receiver_signature(secret: str, timestamp: str, body: bytes) -> str:
    """What the README tells a receiver to compute."""
    signed = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def check_signatures(receivers: Receivers) -> None:
    for headers, body in receivers.hooks:
        timestamp = headers["X-Tarmac-Timestamp"]
        signature = headers["X-Tarmac-Signature-256"]
        assert signature == receiver_signature(HOOK_SECRET, timestamp, body)
        assert verify(
            HOOK_SECRET, header=signature, timestamp=timestamp, body=body, now=time.time()
        )
        assert not verify(
            "another-secret-entirely",
            header=signature,
            timestamp=timestamp,
            body=body,
            now=time.time(),
        )
        assert not verify(
            HOOK_SECRET, header=signature, timestamp=timestamp, body=body + b" ", now=time.time()
        )
        # Sent again an hour later, it is refused for its timestamp.
        assert not verify(
            HOOK_SECRET, header=signature, timestamp=timestamp, body=body, now=time.time() + 3600
        )
        # The body is what the OpenAPI document's `webhooks` says, key for key.
        NotificationBody.model_validate_json(body)
        message = json.loads(body)
        assert headers["X-Tarmac-Event"] == message["event"]
        assert headers["X-Tarmac-Delivery"] == message["id"]


async def outbox_errors(db: Database) -> list[str]:
    async with db.read() as session:
        rows = await session.scalars(
            select(OutboxItem.last_error).where(OutboxItem.last_error.is_not(None))
        )
        return list(rows)


async def test_every_transition_reaches_slack_and_the_webhook_once_without_a_github_app(
    api: Api, receivers: Receivers, clock: TestClock, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    worker = ledger_worker(api)
    for version in ("v1-rc1", "v2-rc1", "v3-rc1", "v4-rc1"):
        assert (await api.create_rc(version)).status == 201
    assert (await api.deploy("production", "v1-rc1")).status == 201
    assert (await api.report("production", "v1-rc1", "success")).status == 200
    assert (await api.deploy("production", "v2-rc1")).status == 201
    assert (await api.report("production", "v2-rc1", "success")).status == 200
    assert (await api.deploy("production", "v3-rc1")).status == 201
    assert (await api.report("production", "v3-rc1", "failure")).status == 200
    deployed = await api.deploy("production", "v4-rc1")
    path = f"/api/releases/Backend/environments/production/deployments/{deployed.body['id']}"
    assert (await api.post(path + "/cancel")).status == 200
    rolled = await api.rollback("production")
    assert rolled.status == 201, rolled.body
    target = rolled.body["release_candidate_version"]
    assert (await api.report("production", target, "success")).status == 200
    freeze = "/api/releases/Backend/environments/production/freeze"
    assert (await api.put(freeze, {"reason": "quarter-end close"})).status == 200
    assert (await api.put(freeze, {"reason": "still closing"})).status == 200  # no news
    refused = await api.deploy("production", "v2-rc1")
    assert refused.status == 400
    assert (await api.delete(freeze)).status == 200
    assert (await api.delete(freeze)).status == 200  # not frozen: no news

    await worker.drain()

    expected = [
        "deployment.started",
        "deployment.succeeded",
        "deployment.started",
        "deployment.succeeded",
        "deployment.started",
        "deployment.failed",
        "deployment.started",
        "deployment.canceled",
        "rollback.started",
        "deployment.succeeded",
        "environment.frozen",
        "deployment.refused",
        "environment.unfrozen",
    ]
    events = receivers.hook_events()
    successes = [e for e in events if e == "deployment.succeeded"]
    # audit hears everything; prod-successes (production's own receiver) its successes alone.
    assert len(successes) == 2 * expected.count("deployment.succeeded")
    assert [e for e in events if e != "deployment.succeeded"] == [
        e for e in expected if e != "deployment.succeeded"
    ]
    assert len(receivers.slack) == len(expected)
    assert [m["text"].split(" Backend")[0] for m in receivers.slack] == [
        "Deployment started",
        "Deployment succeeded",
        "Deployment started",
        "Deployment succeeded",
        "Deployment started",
        "Deployment failed",
        "Deployment started",
        "Deployment canceled",
        "Rollback started",
        "Deployment succeeded",
        "Environment frozen",
        "Deployment refused",
        "Environment unfrozen",
    ]
    check_signatures(receivers)
    assert len({h["X-Tarmac-Delivery"] for h, _ in receivers.hooks}) == len(receivers.hooks)

    # The Block Kit message: candidate, environment, actor, status; the freeze's reason.
    first = json.dumps(receivers.slack[1])
    for shown in (
        "*Candidate*\\nv1-rc1",
        "*Environment*\\nproduction",
        "*Actor*\\nci@example.com",
        "*Status*\\nsuccess",
    ):
        assert shown in first
    refusal = receivers.slack[11]
    assert (
        refusal["text"] == "Deployment refused Backend v2-rc1 to production: Environment is frozen"
    )
    assert "*Deployment refused: Environment is frozen*" in json.dumps(refusal)
    assert "Freeze reason: still closing" in json.dumps(refusal)
    rollback_end = json.loads(
        next(
            b
            for h, b in receivers.hooks
            if json.loads(b)["event"] == "deployment.succeeded"
            and json.loads(b)["deployment"]["kind"] == "rollback"
        )
    )
    assert rollback_end["release_candidate"]["version"] == target
    assert rollback_end["environment"] == "production"
    refused_body = next(
        json.loads(b) for _, b in receivers.hooks if json.loads(b)["event"] == "deployment.refused"
    )
    assert refused_body["freeze"]["reason"] == "still closing"
    assert refused_body["reason"] == refused.body["error"] == "Environment is frozen"
    assert refused_body["release_candidate"]["version"] == "v2-rc1"
    assert refused_body["release_candidate"]["commit"] == SHA_A

    # No secret in a log line or the outbox (tests/leak_check.py looks at every log too).
    logged = caplog.text
    assert SLACK_PATH_SECRET not in logged
    assert HOOK_SECRET not in logged
    assert "/services/T0000" not in logged
    assert await outbox_errors(db) == []


def test_slack_shows_the_pull_requests_and_the_run_when_known() -> None:
    message = {
        "event": "deployment.succeeded",
        "project": "Backend",
        "environment": "production",
        "actor": "ana@example.com",
        "release_candidate": {"version": "v1.2.0-rc1"},
        "deployment": {
            "status": "success",
            "kind": "deploy",
            "workflow_run_url": "https://github.com/acme/backend/actions/runs/7",
        },
        "freeze": None,
        "pull_requests": [{"number": n, "title": f"PR {n}", "url": None} for n in range(7)],
    }
    body = slack_body(message)
    text = json.dumps(body)
    assert "7 pull requests" in text
    assert (
        body["blocks"][-1]["elements"][0]["url"] == "https://github.com/acme/backend/actions/runs/7"
    )
    assert "*Candidate*\\nv1.2.0-rc1" in text
    message["pull_requests"] = None
    assert "pull request" not in json.dumps(slack_body(message))


async def test_a_receiver_down_for_a_while_gets_everything_afterwards_in_order(
    api: Api, receivers: Receivers, clock: TestClock, db: Database
) -> None:
    worker = ledger_worker(api)
    receivers.failing["hook"] = 500
    assert (await api.create_rc("v1-rc1")).status == 201
    for version in ("v1-rc1",):
        assert (await api.deploy("production", version)).status == 201
        assert (await api.report("production", version, "in_progress")).status == 200
        assert (await api.report("production", version, "success")).status == 200
    freeze = "/api/releases/Backend/environments/production/freeze"
    assert (await api.put(freeze, {"reason": "outage drill"})).status == 200
    assert (await api.delete(freeze)).status == 200

    await worker.drain()

    # Slack had everything during the webhook's outage; the webhook had nothing, and its
    # failures are in the outbox without its URL.
    assert [m["text"].split(" Backend")[0] for m in receivers.slack] == [
        "Deployment started",
        "Deployment succeeded",
        "Environment frozen",
        "Environment unfrozen",
    ]
    assert receivers.hooks == []
    errors = await outbox_errors(db)
    assert errors
    assert set(errors) <= {
        "receiver 'audit' answered 500",
        "receiver 'prod-successes' answered 500",
    }
    # It keeps failing a while: each retry comes after its backoff, one item at a time.
    for _ in range(4):
        clock.advance(seconds=61)
        await worker.drain()
    assert receivers.hooks == []
    assert receivers.refused["hook"] >= 5
    del receivers.failing["hook"]
    clock.advance(seconds=61)
    await worker.drain()

    assert receivers.hook_events().count("deployment.succeeded") == 2
    audit = [json.loads(b) for h, b in receivers.hooks]
    assert [m["event"] for m in audit if m["event"] != "deployment.succeeded"] == [
        "deployment.started",
        "environment.frozen",
        "environment.unfrozen",
    ]
    check_signatures(receivers)


async def test_a_failing_receiver_never_holds_up_github_calls(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    receivers: Receivers,
    clock: TestClock,
) -> None:
    receivers.failing["slack"] = 503
    receivers.failing["hook"] = 500
    build = await tagged_rc(webhook, outbox, fake_github, "v1-rc1", SHA_A)
    await accepted(webhook, "workflow_run", run_event("completed", build, "success"))
    await outbox.drain()

    # Auto-deployed to staging on GitHub while both receivers fail.
    assert fake_github.deployments["acme/backend"]
    assert len(fake_github.runs) == 2
    del receivers.failing["slack"]
    del receivers.failing["hook"]
    clock.advance(seconds=61)
    await outbox.drain()
    assert [m["text"].split(" Backend")[0] for m in receivers.slack] == [
        "Release candidate built",
        "Deployment started",
    ]
    assert receivers.hook_events() == ["candidate.built", "deployment.started"]
    check_signatures(receivers)


async def test_a_failed_build_is_told(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    receivers: Receivers,
) -> None:
    build = await tagged_rc(webhook, outbox, fake_github, "v1-rc1", SHA_A)
    await accepted(webhook, "workflow_run", run_event("completed", build, "failure"))
    await outbox.drain()

    assert receivers.hook_events() == ["candidate.build_failed"]
    [message] = receivers.slack
    assert message["text"].startswith("Release candidate build failed")
    assert "Error: The build workflow run did not succeed" in json.dumps(message)


async def test_a_receiver_that_refuses_with_a_4xx_is_not_asked_again(
    api: Api, receivers: Receivers, clock: TestClock, db: Database
) -> None:
    worker = ledger_worker(api)
    receivers.failing["slack"] = 404
    assert (await api.create_rc("v1-rc1")).status == 201
    assert (await api.deploy("production", "v1-rc1")).status == 201
    await worker.drain()
    clock.advance(seconds=3600)
    await worker.drain()

    assert receivers.refused["slack"] == 1
    async with db.read() as session:
        states = list(
            await session.scalars(
                select(OutboxItem.state).where(OutboxItem.action == Action.NOTIFY)
            )
        )
    assert sorted(states) == ["delivered", "failed"]
    assert await outbox_errors(db) == ["receiver 'deploys' answered 404"]


def test_receivers_in_the_projects_file_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "tarmac.yml"
    path.write_text(
        PROJECTS_YAML.replace(
            "    build:\n",
            """    notifications:
      - name: deploys
        slack: {url_env: "not a variable"}
      - name: deploys
        webhook: {url: "ftp://example.com", secret_env: HOOK}
        events: [deployment.exploded]
      - name: both
        slack: {url_env: A}
        webhook: {url: "https://example.com", secret_env: B}
      - name: neither
    build:
""",
            1,
        )
    )
    with pytest.raises(ProjectsFileError) as raised:
        load_projects_file(path)
    where = f"{path}: project 'Backend': "
    problems = raised.value.problems
    assert (
        f"{where}notifications[0].slack.url_env: must be the name of an environment variable, "
        "e.g. SLACK_DEPLOYS_URL" in problems
    )
    assert f"{where}notifications[1].webhook.url: must be an http:// or https:// URL" in problems
    assert any(
        p.startswith(f"{where}notifications[1].events[0]: Input should be 'deployment.started'")
        for p in problems
    )
    assert (
        f"{where}notifications[1].name: 'deploys' is used by another receiver of this project"
        in problems
    )
    assert f"{where}notifications[2]: needs exactly one of slack or webhook" in problems
    assert f"{where}notifications[3]: needs exactly one of slack or webhook" in problems


def test_a_receivers_variable_that_is_not_set_is_named_at_start(
    tmp_path: Path, receivers: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "tarmac.yml"
    path.write_text(notifying_yaml(receivers))
    monkeypatch.delenv(SLACK_VARIABLE)
    with pytest.raises(ProjectsFileError) as raised:
        load_projects_file(path, is_set=lambda name: name in {HOOK_VARIABLE})
    assert raised.value.problems == [
        f"{path}: project 'Backend': notifications: 'deploys': environment variable "
        f"{SLACK_VARIABLE} is not set"
    ]
    assert load_projects_file(path)  # the file itself is fine


async def test_a_receiver_that_hangs_holds_up_neither_github_nor_slack(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub, receivers: Receivers
) -> None:
    receivers.hanging["hook"] = asyncio.Event()
    assert (await github_api.create_rc("v1-rc1")).status == 201
    assert (await github_api.deploy("production", "v1-rc1")).status == 201

    async def rounds() -> None:
        while True:
            await outbox.deliver_due()
            await asyncio.sleep(0.01)

    delivering = asyncio.create_task(rounds())
    try:
        # While the webhook holds its request open: the GitHub Deployment, the deploy
        # workflow's dispatch and its first status go out, and Slack has its message.
        await eventually(lambda: "hook" in receivers.waiting, "the webhook to take the request", 5)
        await eventually(lambda: len(fake_github.runs) == 1, "the deploy dispatch", 5)
        await eventually(
            lambda: bool(fake_github.deployments.get("acme/backend")), "the GitHub Deployment", 5
        )
        await eventually(lambda: len(receivers.slack) == 1, "Slack's message", 5)
        assert receivers.hooks == []
    finally:
        delivering.cancel()
        receivers.hanging["hook"].set()
    await outbox.drain()
    assert receivers.hook_events() == ["deployment.started"]


def test_what_a_receivers_answer_means() -> None:
    assert receiver_answer("audit", 200, None) is None
    assert receiver_answer("audit", 204, None) is None
    for status in (500, 502, 503, 408):
        retry = receiver_answer("audit", status, None)
        assert isinstance(retry, RetryLater)
    limited = receiver_answer("audit", 429, "30")
    assert type(limited).__name__ == "RetryLater"
    assert limited.retry_after == 30.0
    for status in (301, 400, 401, 403, 404, 410, 422):
        refused = receiver_answer("audit", status, None)
        assert isinstance(refused, RefusedForGood)
        assert str(refused) == f"receiver 'audit' answered {status}"


async def test_pr_commands_tell_freezes_and_a_deploy_refused_for_one(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    receivers: Receivers,
) -> None:
    fake_github.grant("acme/backend", "octocat", "write")
    assert (await github_api.create_rc("v1-rc1")).status == 201

    await send_comment(webhook, outbox, "/freeze production release week")
    await send_comment(webhook, outbox, "/deploy v1-rc1 to production")
    await send_comment(webhook, outbox, "/unfreeze production")

    assert receivers.hook_events() == [
        "environment.frozen",
        "deployment.refused",
        "environment.unfrozen",
    ]
    told = [json.loads(body) for _, body in receivers.hooks]
    assert [m["actor"] for m in told] == ["github:octocat"] * 3
    assert told[1]["freeze"]["reason"] == "release week"
    assert told[1]["reason"] == "Environment is frozen"
    assert told[1]["release_candidate"]["version"] == "v1-rc1"
    assert "Freeze reason: release week" in json.dumps(receivers.slack[1])
    check_signatures(receivers)


async def test_auto_deploy_skipping_a_frozen_environment_is_a_refusal(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    receivers: Receivers,
) -> None:
    freeze = "/api/releases/Backend/environments/staging/freeze"
    assert (await github_api.put(freeze, {"reason": "demo day"})).status == 200
    build = await tagged_rc(webhook, outbox, fake_github, "v1-rc1", SHA_A)
    await accepted(webhook, "workflow_run", run_event("completed", build, "success"))
    await outbox.drain()

    assert receivers.hook_events() == [
        "environment.frozen",
        "candidate.built",
        "deployment.refused",
    ]
    refused = json.loads(receivers.hooks[2][1])
    assert (refused["environment"], refused["actor"]) == ("staging", "tarmac (auto-deploy)")
    assert refused["freeze"]["reason"] == "demo day"
    assert refused["reason"] == "Environment is frozen"
    assert refused["release_candidate"]["version"] == "v1-rc1"
    assert fake_github.deployments == {}


async def test_a_deploy_whose_change_report_is_known_says_how_many_pull_requests_it_ships(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub, receivers: Receivers
) -> None:
    history = fake_github.history("acme/backend")
    assert (await github_api.create_rc("v1-rc1", history.tip or "")).status == 201
    assert (await github_api.report("staging", "v1-rc1", "success")).status in (200, 201)
    numbers = [history.merge_pull_request(f"Change {n}", [[f"src/{n}.py"]]) for n in range(3)]
    assert (await github_api.create_rc("v1-rc2", history.tip or "")).status == 201
    service = github_api.client.app[SERVICE]
    # The request does not wait for the fetch here: the test delivers the outbox itself.
    service.settings = service.settings.model_copy(update={"change_report_wait_seconds": 0})
    asked = "/api/releases/Backend/releases/v1-rc2/changes"
    assert (await github_api.get(asked, params={"environment": "staging"})).status == 202
    await outbox.drain()

    assert (await github_api.deploy("staging", "v1-rc2")).status == 201
    await outbox.drain()

    [started] = [
        json.loads(body)
        for _, body in receivers.hooks
        if json.loads(body)["event"] == "deployment.started"
        and json.loads(body)["release_candidate"]["version"] == "v1-rc2"
    ]
    assert [pr["number"] for pr in started["pull_requests"]] == numbers
    assert any("3 pull requests" in json.dumps(message) for message in receivers.slack)
