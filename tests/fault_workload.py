"""A deployment workload for fault tests: CI and GitHub driving `tarmac serve` processes while
the test breaks things, and the count of what reached the fake GitHub.

Each lane is one environment, deployed to one release after another: create the release
candidate and deploy it through the API, wait for the deploy run Tarmac dispatches at the fake
GitHub, then report it `in_progress` and `success`, through signed `workflow_run` deliveries
(even deployments) or the API's PATCH (odd ones). A request that gets no answer (connection
refused or dropped, timeout, 5xx) is retried as CI would, the deploy POST after checking whether
the deployment exists (a blind retry would deploy twice, as it would for a human).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from bot.storage.db import Database
from bot.storage.models import Deployment, OutboxItem, ReleaseCandidate
from tests.conftest import sign_webhook
from tests.fake_github import FakeGitHub, Run
from tests.processes import eventually, start_server, stop_server
from tests.test_github_workflow_runs import run_event

PROJECT = "Svc"
REPO = "acme/backend"
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=15)
RETRY_PAUSE_SECONDS = 0.2
GIVE_UP_SECONDS = 900
# The GitHub statuses of a deployment reported to the end.
REPORTED = frozenset({"pending", "in_progress", "success"})
# A dispatch whose answer a kill lost is looked for during a lease and 15 s before it is sent
# again; a workload's deploys wait behind the others' calls too.
RUN_DEADLINE_SECONDS = 90


def lane_name(lane: int) -> str:
    return f"lane-{lane}"


def projects_yaml(lanes: int) -> str:
    environments = "".join(
        f"      - name: {lane_name(k)}\n        deploy_workflow: deploy.yml\n" for k in range(lanes)
    )
    return (
        f'projects:\n  - name: {PROJECT}\n    repo: {REPO}\n    tag_prefix: ""\n'
        f"    environments:\n{environments}"
    )


def version_of(index: int) -> str:
    return f"v{index}.0.0-rc1"


def commit_of(index: int) -> str:
    return f"{index + 1:040x}"


@dataclass
class Tally:
    """What the clients saw: every 2xx answer, and every retry after no answer."""

    candidates: set[str] = field(default_factory=set)  # versions answered 201
    deployments: dict[int, str] = field(default_factory=dict)  # id answered 201 -> version
    reported: set[int] = field(default_factory=set)  # deployments whose success was answered
    retries: int = 0
    unanswered: Counter[str] = field(default_factory=Counter)  # why, e.g. "503", "ClientOSError"


class Clients:
    """CI and GitHub's webhook sender, talking to any of `bases` (picked at random)."""

    def __init__(
        self, http: aiohttp.ClientSession, bases: list[str], token: str, fake: FakeGitHub
    ) -> None:
        self.http = http
        self.bases = bases
        self.token = token
        self.fake = fake
        self.tally = Tally()
        # No client waits for an answer forever: a server that never comes back fails the test.
        self.give_up_at = time.monotonic() + GIVE_UP_SECONDS

    async def pause_before_retry(self, what: str) -> None:
        assert time.monotonic() < self.give_up_at, f"no answer to {what}: {self.tally.unanswered}"
        self.tally.retries += 1
        await asyncio.sleep(RETRY_PAUSE_SECONDS)

    async def _once(
        self, method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, Any] | None:
        url = random.choice(self.bases) + path
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            async with self.http.request(
                method, url, data=data, headers=headers, timeout=REQUEST_TIMEOUT
            ) as reply:
                answer = await reply.json()
                status = reply.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.unanswered[type(exc).__name__] += 1
            return None
        if status >= 500:
            assert answer == {"error": answer.get("error")}, answer  # JSON error body
            self.tally.unanswered[str(status)] += 1
            return None
        return status, answer

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any] | None:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        return await self._once(method, "/api/releases/" + PROJECT + path, body, headers)

    async def until_answered(
        self, method: str, path: str, body: Any = None
    ) -> tuple[tuple[int, Any], bool]:
        """The first answer, and whether an attempt before it went unanswered."""
        retried = False
        while (answer := await self.api(method, path, body)) is None:
            retried = True
            await self.pause_before_retry(f"{method} {path}")
        return answer, retried

    async def create_candidate(self, index: int) -> None:
        body = {"repo": REPO, "commit": commit_of(index)}
        (status, answer), retried = await self.until_answered(
            "POST", f"/releases/{version_of(index)}", body
        )
        # A 409 after an unanswered attempt: that attempt was committed.
        assert status == 201 or (retried and status == 409), (status, answer)
        if status == 201:
            self.tally.candidates.add(version_of(index))

    async def deploy(self, lane: int, index: int) -> int:
        path = f"/environments/{lane_name(lane)}/deployments"
        version = version_of(index)
        while True:
            answer = await self.api("POST", path, {"release_candidate_version": version})
            if answer is not None:
                status, body = answer
                assert status == 201, answer
                self.tally.deployments[body["id"]] = version
                return int(body["id"])
            await self.pause_before_retry(f"POST {path}")
            (status, listed), _ = await self.until_answered("GET", path + "?per_page=1")
            assert status == 200, listed
            if listed and listed[0]["release_candidate_version"] == version:
                return int(listed[0]["id"])  # the unanswered attempt was committed

    async def deploy_run(self, deployment_id: int) -> Run:
        def find() -> Run | None:
            for run in self.fake.runs.values():
                if run.inputs.get("tarmac_deployment_id") == str(deployment_id):
                    return run
            return None

        await eventually(
            lambda: find() is not None, f"deployment {deployment_id}'s run", RUN_DEADLINE_SECONDS
        )
        run = find()
        assert run is not None
        return run

    async def report_by_webhook(self, run: Run, commit: str) -> None:
        run.head_sha = commit  # dispatched on the RC's commit
        for action in ("in_progress", "completed"):
            payload = run_event(action, run, "success" if action == "completed" else None)
            await self.deliver("workflow_run", payload)

    async def deliver(self, event: str, payload: Any) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/a1b2c3d",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),  # the same on every retry, as GitHub does
            "X-Hub-Signature-256": sign_webhook(body),
        }
        while (answer := await self._once("POST", "/api/github/webhooks", body, headers)) is None:
            await self.pause_before_retry(f"{event} delivery")
        assert 200 <= answer[0] < 300, answer

    async def report_by_api(
        self, lane: int, index: int, statuses: tuple[str, ...] = ("in_progress", "success")
    ) -> None:
        path = f"/environments/{lane_name(lane)}/deployments"
        for status in statuses:
            body = {"release_candidate_version": version_of(index), "status": status}
            (code, answer), _ = await self.until_answered("PATCH", path, body)
            assert code == 200, answer

    async def until_deployed(self, lane: int, deployment_id: int) -> None:
        path = f"/environments/{lane_name(lane)}/deployments?per_page=1"
        deadline = time.monotonic() + RUN_DEADLINE_SECONDS
        while True:
            (status, listed), _ = await self.until_answered("GET", path)
            assert status == 200, listed
            if listed and listed[0]["id"] == deployment_id and listed[0]["status"] == "success":
                return
            assert time.monotonic() < deadline, f"deployment {deployment_id}: {listed}"
            await asyncio.sleep(0.02)  # a look, not a retry: the answer came

    async def ship(self, lane: int, index: int) -> None:
        await self.create_candidate(index)
        deployment_id = await self.deploy(lane, index)
        run = await self.deploy_run(deployment_id)
        if index % 2 == 0:
            await self.report_by_webhook(run, commit_of(index))
            # A delivery is answered once stored and handled from the inbox a moment later:
            # like a pipeline that goes on once the environment shows the deploy done, the
            # lane waits for that before the next deploy (which would supersede this one).
            await self.until_deployed(lane, deployment_id)
        else:
            await self.report_by_api(lane, index)
        self.tally.reported.add(deployment_id)

    async def run_lane(self, lane: int, indices: list[int]) -> None:
        for index in indices:
            await self.ship(lane, index)


async def run_workload(clients: Clients, lanes: int, deployments: int) -> None:
    """`deployments` deployments over `lanes` environments, the lanes in parallel."""
    await asyncio.gather(
        *(clients.run_lane(k, list(range(k, deployments, lanes))) for k in range(lanes))
    )


class ActionsRunner:
    """GitHub Actions for the fake GitHub: every run a dispatch started runs to `success` at
    once, its `workflow_run` events (`in_progress`, `completed`) delivered to Tarmac at the
    RC's commit, and delivered again until answered (Tarmac may be down)."""

    def __init__(self, clients: Clients) -> None:
        self.clients = clients
        self.completed: set[int] = set()
        self._task: asyncio.Task[None] | None = None

    def __enter__(self) -> ActionsRunner:
        self._task = asyncio.create_task(self._run())
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def _run(self) -> None:
        while True:
            for run in list(self.clients.fake.runs.values()):
                if run.id not in self.completed:
                    await self.clients.report_by_webhook(run, str(run.inputs["tarmac_commit_sha"]))
                    self.completed.add(run.id)
            await asyncio.sleep(0.05)


# --- what reached GitHub -----------------------------------------------------------------


@dataclass
class Effects:
    github_deployments: Counter[str]  # tarmac deployment id -> GitHub Deployments made
    dispatches: Counter[str]  # tarmac deployment id -> deploy runs dispatched
    statuses: dict[str, Counter[str]]  # tarmac deployment id -> state -> statuses made

    @property
    def calls(self) -> int:
        return (
            sum(self.github_deployments.values())
            + sum(self.dispatches.values())
            + sum(sum(c.values()) for c in self.statuses.values())
        )

    @property
    def duplicates(self) -> int:
        counts = [*self.github_deployments.values(), *self.dispatches.values()]
        counts += [n for states in self.statuses.values() for n in states.values()]
        return sum(n - 1 for n in counts if n > 1)

    def missing(self, deployment_ids: set[int], wanted: frozenset[str] = REPORTED) -> list[int]:
        """Deployments without their GitHub Deployment, run, or one of the `wanted` states."""
        return sorted(
            i
            for i in deployment_ids
            if not self.github_deployments[str(i)]
            or not self.dispatches[str(i)]
            or not wanted <= set(self.statuses.get(str(i), {}))
        )


def effects_at(fake: FakeGitHub) -> Effects:
    made = fake.deployments.get(REPO, [])
    github_deployments = Counter(str(d["payload"]["tarmac_deployment_id"]) for d in made)
    dispatches = Counter(
        str(r.inputs.get("tarmac_deployment_id"))
        for r in fake.runs.values()
        if r.workflow == "deploy.yml"
    )
    statuses = {
        str(d["payload"]["tarmac_deployment_id"]): Counter(
            s["state"] for s in fake.statuses[d["id"]]
        )
        for d in made
    }
    return Effects(github_deployments, dispatches, statuses)


async def all_delivered(
    fake: FakeGitHub,
    deployment_ids: set[int],
    deadline: float,
    database_url: str | None = None,
    wanted: frozenset[str] = REPORTED,
) -> float:
    """Wait until every deployment's effects are at GitHub; returns the seconds it took."""
    started = time.monotonic()
    try:
        await eventually(
            lambda: not effects_at(fake).missing(deployment_ids, wanted),
            "every GitHub effect",
            deadline,
        )
    except AssertionError:
        effects = effects_at(fake)
        missing = effects.missing(deployment_ids, wanted)
        found = {
            i: (effects.github_deployments[str(i)], effects.dispatches[str(i)])
            for i in missing[:10]
        }
        states = {i: dict(effects.statuses.get(str(i), {})) for i in missing[:10]}
        pending = await outbox_rows(database_url, missing[:10]) if database_url else []
        raise AssertionError(
            f"not at GitHub: {missing}; (deployments, dispatches) {found}; statuses {states}; "
            f"outbox {pending}"
        ) from None
    return time.monotonic() - started


async def outbox_settled(fake: FakeGitHub, database_url: str, deadline: float = 60) -> None:
    """Wait until no outbox item is left to deliver and GitHub has answered every request it
    got. From then on nothing can reach GitHub again (only a pending item is ever sent), so a
    duplicate is there to count now or never: no clock to wait out."""
    db = Database.from_url(database_url)
    pending = select(func.count()).select_from(OutboxItem).where(OutboxItem.state == "pending")
    try:
        started = time.monotonic()
        while True:
            async with db.read() as session:
                left = int(await session.scalar(pending) or 0)
            if left == 0 and fake.in_flight == 0:
                return
            assert time.monotonic() - started < deadline, f"{left} outbox items still pending"
            await asyncio.sleep(0.05)
    finally:
        await db.dispose()


async def outbox_rows(database_url: str, deployment_ids: list[int]) -> list[tuple[Any, ...]]:
    db = Database.from_url(database_url)
    try:
        async with db.read() as session:
            rows = await session.execute(
                select(
                    OutboxItem.deployment_id,
                    OutboxItem.action,
                    OutboxItem.state,
                    OutboxItem.attempts,
                    OutboxItem.last_error,
                    OutboxItem.next_attempt_at,
                )
                .where(OutboxItem.deployment_id.in_(deployment_ids))
                .order_by(OutboxItem.id)
            )
            return [tuple(row) for row in rows]
    finally:
        await db.dispose()


async def stored(database_url: str) -> tuple[set[str], dict[int, str]]:
    """The release candidates (versions) and deployments (id -> status) in the database."""
    db = Database.from_url(database_url)
    try:
        async with db.read() as session:
            versions = set(await session.scalars(select(ReleaseCandidate.version)))
            rows = (await session.execute(select(Deployment.id, Deployment.status))).all()
    finally:
        await db.dispose()
    return versions, {row[0]: str(row[1]) for row in rows}


def workload_deadline(deployments: int) -> float:
    """Seconds the clients get for a workload: generous, for a machine shared with others."""
    return 300 + 1.5 * deployments


async def run_killed_under_load(
    clients: Clients,
    *,
    env: dict[str, str],
    cwd: Path,
    port: int,
    lanes: int,
    deployments: int,
    kills: int,
    chance: random.Random,
    settled: Callable[[], Awaitable[None]],
) -> int:
    """The workload against one `tarmac serve` on `port`, SIGKILLed `kills` times and started
    again; `settled` runs once the workload is done, the server still up. Returns the kills
    survived.

    The moments are drawn over the workload's progress (each kill once a random share of the
    deployments is reported, then after a random pause), not over the clock: however fast the
    server restarts and drains, every kill lands while the workload runs."""
    server = await start_server(env, cwd, port)
    survived = 0
    work = asyncio.create_task(run_workload(clients, lanes, deployments))
    try:
        marks = sorted(chance.sample(range(deployments // 20, deployments * 9 // 10), kills))
        for mark in marks:
            await eventually(
                lambda mark=mark: len(clients.tally.reported) >= mark or work.done(),
                f"{mark} deployments reported",
                workload_deadline(deployments),
            )
            await asyncio.sleep(chance.uniform(0.0, 0.3))
            assert not work.done(), f"the workload ended after {survived} kills"
            os.kill(server.pid, signal.SIGKILL)
            await asyncio.to_thread(server.wait, 10)
            survived += 1
            server = await start_server(env, cwd, port)
        await asyncio.wait_for(work, workload_deadline(deployments))
        await settled()
    finally:
        work.cancel()
        await stop_server(server)
    return survived
