"""Faults around the real `tarmac serve` (issue 5 §1): killed mid-work, GitHub down or rate
limiting, the database gone at start or while running, SIGTERM with work in flight, and two
processes on one database. Each test bounds its own time; `make soak` runs the longer
variants (marked `soak`)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import select

from bot.storage.db import Database
from bot.storage.models import Deployment
from bot.storage.outbox import OUTAGE_MAX_BACKOFF
from tests.conftest import BACKEND_INSTALLATION, SHA_A
from tests.fake_github import FakeGitHub
from tests.fault_workload import (
    REPO,
    ActionsRunner,
    Clients,
    all_delivered,
    effects_at,
    outbox_settled,
    projects_yaml,
    run_killed_under_load,
    run_workload,
    stored,
    workload_deadline,
)
from tests.figures import record_figure
from tests.processes import TcpProxy, app_env, call, eventually, start_server, stop_server
from tests.test_cli import (
    EXAMPLE_CONFIG,
    created_token,
    free_port,
    run_tarmac,
    sqlite_url,
    tarmac_env,
)

# SQL is what these tests check: both databases in make test (tests/databases.py).
pytestmark = pytest.mark.both_databases

# A delivery whose process was killed is taken again after this lease.
LEASE_SECONDS = "3"


def server_env(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, key: str, lanes: int
) -> dict[str, str]:
    config = tmp_path / "tarmac.yml"
    config.write_text(projects_yaml(lanes))
    return app_env(
        database_url=database_url,
        config=config,
        fake_github=fake_github,
        private_key=key,
        outbox_lease_seconds=LEASE_SECONDS,
    )


def new_token(env: dict[str, str], cwd: Path) -> str:
    return created_token(run_tarmac("token", "create", "ci", env=env, cwd=cwd))


@asynccontextmanager
async def clients_of_a_server(
    env: dict[str, str], cwd: Path, fake_github: FakeGitHub
) -> AsyncIterator[Clients]:
    """A `tarmac serve` on `env` and workload clients for it; the server stops afterwards."""
    token = new_token(env, cwd)
    port = free_port()
    server = await start_server(env, cwd, port)
    try:
        async with aiohttp.ClientSession() as http:
            yield Clients(http, [f"http://127.0.0.1:{port}"], token, fake_github)
    finally:
        await stop_server(server)


async def check_exactly_once(
    fake: FakeGitHub, clients: Clients, database_url: str, subject: str
) -> None:
    """Every 2xx answer is in the database; every GitHub effect of every deployment exists,
    once."""
    tally = clients.tally
    delivered_in = await all_delivered(fake, tally.reported, 60, database_url)
    await outbox_settled(fake, database_url)
    effects = effects_at(fake)
    versions, deployments = await stored(database_url)

    record_figure(subject, "deployments", len(deployments))
    record_figure(subject, "calls delivered", effects.calls)
    record_figure(subject, "duplicates found", effects.duplicates)
    record_figure(subject, "client retries", tally.retries)
    record_figure(subject, "last effects delivered after workload (s)", delivered_in)
    assert effects.duplicates == 0
    assert tally.candidates <= versions
    assert set(tally.deployments) <= set(deployments)
    # One Tarmac deployment per lane step (the client checks before retrying a deploy), each
    # reported a success, each mirrored: a GitHub Deployment, a dispatch, its statuses.
    assert set(deployments) == tally.reported
    assert set(deployments.values()) == {"success"}
    assert set(effects.github_deployments) == {str(i) for i in deployments}
    assert effects.missing(tally.reported) == []
    assert fake.violations == []


# make test kills the SQLite server; make soak kills both, more often, over more deployments.
@pytest.mark.parametrize("backend", ["sqlite"])
async def test_kills_at_random_moments_lose_nothing_and_double_nothing(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, github_private_key: str
) -> None:
    # Enough deployments that the workload outlasts the kills (the outbox drains fast).
    await survive_kills(tmp_path, database_url, fake_github, github_private_key, 150, 5)


@pytest.mark.soak
async def test_soak_many_kills_lose_nothing_and_double_nothing(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, github_private_key: str
) -> None:
    await survive_kills(tmp_path, database_url, fake_github, github_private_key, 500, 20)


async def survive_kills(
    tmp_path: Path,
    database_url: str,
    fake_github: FakeGitHub,
    github_private_key: str,
    deployments: int,
    kills: int,
) -> None:
    """SIGKILL `kills` times at random moments while `deployments` deployments are created
    and reported over ten environments; restart after each, clients retrying.

    The moments are drawn over the workload's progress (each kill once a random share of the
    deployments is reported, then after a random pause), not over the clock: however fast the
    server restarts and drains, every kill lands while the workload runs."""
    lanes = 10
    seed = random.randrange(2**32)
    chance = random.Random(seed)
    env = server_env(tmp_path, database_url, fake_github, github_private_key, lanes)
    token = new_token(env, tmp_path)
    port = free_port()
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        clients = Clients(http, [f"http://127.0.0.1:{port}"], token, fake_github)
        survived = await run_killed_under_load(
            clients,
            env=env,
            cwd=tmp_path,
            port=port,
            lanes=lanes,
            deployments=deployments,
            kills=kills,
            chance=chance,
            settled=lambda: check_exactly_once(fake_github, clients, database_url, "faults: kills"),
        )
    record_figure("faults: kills", "kills survived", survived)
    record_figure("faults: kills", "seed", seed)
    record_figure("faults: kills", "run time (s)", time.monotonic() - started)
    assert survived == kills


# --- two processes, one PostgreSQL ---------------------------------------------------------


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_two_processes_on_one_database_make_every_github_effect_once(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, github_private_key: str
) -> None:
    await two_processes(tmp_path, database_url, fake_github, github_private_key, 150)


@pytest.mark.soak
@pytest.mark.parametrize("backend", ["postgresql"])
async def test_soak_two_processes_make_a_thousand_deployments_effects_once(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, github_private_key: str
) -> None:
    await two_processes(tmp_path, database_url, fake_github, github_private_key, 1000)


async def two_processes(
    tmp_path: Path,
    database_url: str,
    fake_github: FakeGitHub,
    github_private_key: str,
    deployments: int,
) -> None:
    """Two `tarmac serve` on one database; each request goes to either, at random."""
    lanes = 20
    env = server_env(tmp_path, database_url, fake_github, github_private_key, lanes)
    # Nothing dies here: the default lease, so a GitHub call slowed by a busy machine is not
    # given up (at 0.8 lease) while it may still land, and then checked and repeated.
    del env["TARMAC_OUTBOX_LEASE_SECONDS"]
    token = new_token(env, tmp_path)
    ports = [free_port(), free_port()]
    started = time.monotonic()
    servers = [await start_server(env, tmp_path, port) for port in ports]
    try:
        async with aiohttp.ClientSession() as http:
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            clients = Clients(http, bases, token, fake_github)
            await asyncio.wait_for(
                run_workload(clients, lanes, deployments), workload_deadline(deployments)
            )
            await check_exactly_once(fake_github, clients, database_url, "faults: two processes")
    finally:
        codes = [await stop_server(server) for server in servers]
    took = time.monotonic() - started
    record_figure("faults: two processes", "run time (s)", took)
    record_figure("faults: two processes", "deployments per second", deployments / took)
    assert codes == [0, 0]
    assert clients.tally.retries == 0


# --- GitHub down, GitHub rate limiting -----------------------------------------------------

# Each half of the outage (502s, then refused connections) outlasts the longest backoff the
# worker takes while GitHub is unreachable, so every pending call reaches that cap: what a
# longer outage would show.
OUTAGE_SECONDS = 2 * (OUTAGE_MAX_BACKOFF.total_seconds() + 2)
RECOVERY_DEADLINE_SECONDS = 30


# A deployment reported `success` before its dispatch goes out is not dispatched at all (it is
# over); reported `in_progress`, it makes four calls: Deployment, dispatch, two statuses.
STARTED = frozenset({"pending", "in_progress"})


async def ship_one(clients: Clients, lane: int, index: int) -> int:
    """Create, deploy and report a release `in_progress` as a CD system would, without
    waiting for GitHub."""
    await clients.create_candidate(index)
    deployment_id = await clients.deploy(lane, index)
    await clients.report_by_api(lane, index, ("in_progress",))
    clients.tally.reported.add(deployment_id)
    return deployment_id


def creation_order(fake: FakeGitHub, deployment_id: int) -> list[str]:
    """What GitHub made for the deployment, in the order it made them (one id sequence)."""
    [made] = [
        d
        for d in fake.deployments.get(REPO, [])
        if d["payload"]["tarmac_deployment_id"] == deployment_id
    ]
    [run] = [
        r for r in fake.runs.values() if r.inputs["tarmac_deployment_id"] == str(deployment_id)
    ]
    effects = [(made["id"], "deployment"), (run.id, "dispatch")]
    effects += [(s["id"], s["state"]) for s in fake.statuses[made["id"]]]
    return [name for _, name in sorted(effects)]


# Half a minute of outage: make soak's. make test keeps the short outage of
# tests/test_github_deployments.py (statuses reach GitHub in order after it).
@pytest.mark.soak
@pytest.mark.parametrize("backend", ["postgresql"])  # the worker's logic, not storage
async def test_calls_pending_through_a_github_outage_are_delivered_soon_after_in_order(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, github_private_key: str
) -> None:
    """GitHub answers 502 to everything for half the outage and refuses connections for the
    other half; Tarmac keeps taking deployments, and delivers them all once it is back."""
    lanes = 20
    proxy = TcpProxy("127.0.0.1", int(fake_github.server_url.rsplit(":", 1)[1]), free_port())
    await proxy.start()
    env = server_env(tmp_path, database_url, fake_github, github_private_key, lanes)
    env["TARMAC_GITHUB_API_URL"] = f"http://127.0.0.1:{proxy.port}"
    try:
        async with clients_of_a_server(env, tmp_path, fake_github) as clients:
            await clients.ship(0, 0)  # GitHub works: the installation token is cached

            down_at = time.monotonic()
            outage = fake_github.fail(r".*", status=502, times=10**9)
            ids = await asyncio.gather(*(ship_one(clients, k, k) for k in range(1, lanes)))
            await asyncio.sleep(OUTAGE_SECONDS / 2 - (time.monotonic() - down_at))
            outage.times = 0
            await proxy.cut()
            await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - down_at))
            await proxy.restore()
            back_at = time.monotonic()

            delivered_in = await all_delivered(
                fake_github, set(ids), RECOVERY_DEADLINE_SECONDS + 5, database_url, STARTED
            )
            await outbox_settled(fake_github, database_url)
    finally:
        await proxy.close()

    effects = effects_at(fake_github)
    record_figure("faults: GitHub down", "outage (s)", back_at - down_at)
    answered_502 = sum(1 for c in fake_github.calls if c.faulted)
    record_figure("faults: GitHub down", "calls answered 502", answered_502)
    record_figure("faults: GitHub down", "calls delivered", effects.calls)
    record_figure("faults: GitHub down", "all delivered after recovery (s)", delivered_in)
    record_figure("faults: GitHub down", "duplicates found", effects.duplicates)
    assert delivered_in <= RECOVERY_DEADLINE_SECONDS
    assert effects.duplicates == 0
    for deployment_id in ids:
        order = creation_order(fake_github, deployment_id)
        assert order == ["deployment", "dispatch", "pending", "in_progress"], order


@pytest.mark.parametrize("backend", ["sqlite"])  # the worker's logic, not storage
async def test_no_call_reaches_an_installation_before_its_retry_after(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, github_private_key: str
) -> None:
    lanes, retry_after = 8, 8
    env = server_env(tmp_path, database_url, fake_github, github_private_key, lanes)
    async with clients_of_a_server(env, tmp_path, fake_github) as clients:
        await clients.ship(0, 0)  # the installation token is cached
        limited = fake_github.fail(
            r"/deployments$",
            status=429,
            method="POST",
            headers={"Retry-After": str(retry_after)},
        )
        ids = await asyncio.gather(*(ship_one(clients, k, k) for k in range(1, lanes)))
        delivered_in = await all_delivered(
            fake_github, set(ids), retry_after + 20, database_url, STARTED
        )

    assert limited.times == 0
    [answered_429] = [c for c in fake_github.calls if c.faulted]
    installation = f"installation:{BACKEND_INSTALLATION}"
    # Calls already on their way when the 429 was sent may still arrive; none started after.
    in_flight = 1.0
    window = [
        c
        for c in fake_github.calls
        if c.auth == installation
        and answered_429.at + in_flight < c.at < answered_429.at + retry_after
    ]
    record_figure("faults: rate limit", "Retry-After (s)", retry_after)
    record_figure("faults: rate limit", "calls inside the window", len(window))
    record_figure("faults: rate limit", "all delivered after (s)", delivered_in)
    assert window == []
    assert effects_at(fake_github).duplicates == 0


# --- SIGTERM with work in flight ---------------------------------------------------------

SHUTDOWN_SECONDS = 10


async def test_sigterm_lets_a_waiting_request_finish_and_exits_0(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """A request waits on SQLite's write lock (held by the test) when SIGTERM comes: the server
    stops accepting, answers it once the lock is free, and exits 0."""
    database = tmp_path / "tarmac.db"
    shutil.copy(sqlite_template, database)
    env = tarmac_env(database_url=sqlite_url(database), config=EXAMPLE_CONFIG)
    token = new_token(env, tmp_path)
    port = free_port()
    server = await start_server(env, tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    holder = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    try:
        async with aiohttp.ClientSession() as http:
            holder.execute("BEGIN IMMEDIATE")
            waiting = asyncio.create_task(
                call(
                    http,
                    "POST",
                    base + "/api/releases/Backend/releases/v1-rc1",
                    token,
                    {"repo": "acme/backend", "commit": SHA_A},
                )
            )
            await asyncio.sleep(1.0)  # the request is in, waiting for the lock
            assert not waiting.done()
            server.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            await asyncio.sleep(0.5)
            served = await served_after_sigterm(base + "/healthz")
            holder.execute("COMMIT")
            status, body = await asyncio.wait_for(waiting, SHUTDOWN_SECONDS)
            code = await asyncio.to_thread(server.wait, SHUTDOWN_SECONDS)
            stopped_in = time.monotonic() - signalled
    finally:
        holder.close()
        await stop_server(server)

    record_figure("faults: SIGTERM", "exit code (request in flight)", code)
    record_figure("faults: SIGTERM", "stopped in (s) (request in flight)", stopped_in)
    assert not served  # nothing new is taken on once SIGTERM came
    assert (status, body["version"]) == (201, "v1-rc1")
    assert code == 0
    assert stopped_in < SHUTDOWN_SECONDS
    with sqlite3.connect(database) as check:
        [(version,)] = check.execute("SELECT version FROM release_candidates").fetchall()
    assert version == "v1-rc1"


async def served_after_sigterm(url: str) -> bool:
    """Whether a new request is answered. It should be refused; with SQLite calls made on the
    event loop's thread (bot/storage/sqlite_inline.py) the server cannot even see the signal
    while it waits for the lock, so a new connection then gets no answer at all, which also
    passes."""
    timeout = aiohttp.ClientTimeout(total=1.5)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as reply:
            await reply.read()
    except (aiohttp.ClientConnectionError, TimeoutError):
        return False
    return True


async def test_sigterm_lets_a_slow_github_call_finish_and_record_it(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, github_private_key: str
) -> None:
    """The outbox worker is in the middle of a slow GitHub call when SIGTERM comes: the call
    completes and is recorded, so the next process does not make it again."""
    env = server_env(tmp_path, database_url, fake_github, github_private_key, 1)
    env["TARMAC_OUTBOX_LEASE_SECONDS"] = "5"  # gives up on a call after 4 s
    token = new_token(env, tmp_path)
    port = free_port()
    server = await start_server(env, tmp_path, port)
    fake_github.slow[r"/deployments$"] = 2.5
    try:
        async with aiohttp.ClientSession() as http:
            clients = Clients(http, [f"http://127.0.0.1:{port}"], token, fake_github)
            await clients.create_candidate(0)
            deployment_id = await clients.deploy(0, 0)
            await eventually(
                lambda: bool(fake_github.calls_to("POST", r"/deployments$")), "the GitHub call"
            )
            server.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            code = await asyncio.to_thread(server.wait, SHUTDOWN_SECONDS)
            stopped_in = time.monotonic() - signalled
            fake_github.slow.clear()

            server = await start_server(env, tmp_path, port)
            await all_delivered_but_reports(fake_github, deployment_id)
            await outbox_settled(fake_github, database_url)  # nothing left that could double
    finally:
        await stop_server(server)

    record_figure("faults: SIGTERM", "exit code (GitHub call in flight)", code)
    record_figure("faults: SIGTERM", "stopped in (s) (GitHub call in flight)", stopped_in)
    assert code == 0
    assert stopped_in < SHUTDOWN_SECONDS
    assert len(fake_github.calls_to("POST", r"/deployments$")) == 1
    # Recorded as delivered: the next process did not even need to look it up.
    assert fake_github.calls_to("GET", r"/deployments$") == []
    assert effects_at(fake_github).duplicates == 0


async def all_delivered_but_reports(fake: FakeGitHub, deployment_id: int) -> None:
    def done() -> bool:
        effects = effects_at(fake)
        key = str(deployment_id)
        return bool(effects.dispatches[key]) and "pending" in effects.statuses.get(key, {})

    await eventually(done, "the dispatch and the pending status")


# --- lost dispatch answers, then a kill (issue 12, class 11) -------------------------------

LOST_ANSWER_DEPLOYMENTS = 10
# Every kind of call the deployments make, each answered 502 the first three times; two of the
# three dispatches had started their run when the 502 came, one had not.
FAULTED_KINDS = [
    ("POST", r"/access_tokens$"),
    ("GET", r"/installation$"),
    ("GET", r"^/repos/acme/backend$"),
    ("POST", r"/deployments$"),
    ("POST", r"/statuses$"),
    ("GET", r"/workflows/deploy\.yml/runs$"),
]
ALL_SUCCESS_DEADLINE_SECONDS = 40


@pytest.mark.soak
async def test_lost_dispatch_answers_and_a_kill_dispatch_and_mirror_every_deployment_once(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, github_private_key: str
) -> None:
    """10 deployments accepted while GitHub answers 502 to the first 3 calls of each kind,
    then SIGKILL while dispatches are on their way, and a restart: every deployment is
    dispatched and mirrored once, and all are `success` (their runs completed) within 40 s of
    the restart. The defaults throughout: lease, backoff, lookup window."""
    env = server_env(tmp_path, database_url, fake_github, github_private_key, 10)
    del env["TARMAC_OUTBOX_LEASE_SECONDS"]
    for method, pattern in FAULTED_KINDS:
        fake_github.fail(pattern, method=method, status=502, times=3)
    fake_github.fail(r"/dispatches$", method="POST", status=502, times=2, act_first=True)
    fake_github.fail(r"/dispatches$", method="POST", status=502, times=1)
    # GitHub acts on a dispatch at once and answers a second later: the kill catches some.
    fake_github.slow[r"/dispatches$"] = 1.0
    token = new_token(env, tmp_path)
    port = free_port()
    server = await start_server(env, tmp_path, port)
    try:
        async with aiohttp.ClientSession() as http:
            clients = Clients(http, [f"http://127.0.0.1:{port}"], token, fake_github)
            with ActionsRunner(clients):
                deployed = await asyncio.gather(
                    *(deploy_one(clients, k) for k in range(LOST_ANSWER_DEPLOYMENTS))
                )
                await eventually(
                    lambda: len(fake_github.calls_to("POST", r"/dispatches$")) >= 5,
                    "dispatches on their way",
                )
                in_flight = fake_github.in_flight
                os.kill(server.pid, signal.SIGKILL)
                await asyncio.to_thread(server.wait, 10)
                fake_github.slow.clear()
                restarted = time.monotonic()
                server = await start_server(env, tmp_path, port)
                all_success_in = await all_success(database_url, set(deployed), restarted)
                delivered_in = await all_delivered(fake_github, set(deployed), 60, database_url)
                await outbox_settled(fake_github, database_url)
    finally:
        await stop_server(server)

    effects = effects_at(fake_github)
    subject = "faults: lost dispatch answers and a kill"
    record_figure(subject, "deployments", len(deployed))
    record_figure(subject, "calls answered 502", sum(1 for c in fake_github.calls if c.faulted))
    record_figure(subject, "GitHub calls unanswered at the kill", in_flight)
    record_figure(subject, "all success after the restart (s)", all_success_in)
    record_figure(subject, "all mirrored after the restart (s)", all_success_in + delivered_in)
    record_figure(subject, "run lookups", len(fake_github.calls_to("GET", r"/runs$")))
    record_figure(subject, "duplicates found", effects.duplicates)
    assert effects.duplicates == 0
    assert effects.dispatches == Counter(str(i) for i in deployed)
    assert effects.github_deployments == Counter(str(i) for i in deployed)
    assert effects.missing(set(deployed)) == []
    assert all_success_in <= ALL_SUCCESS_DEADLINE_SECONDS
    assert fake_github.violations == []


async def deploy_one(clients: Clients, index: int) -> int:
    await clients.create_candidate(index)
    return await clients.deploy(index, index)


async def all_success(database_url: str, deployment_ids: set[int], since: float) -> float:
    """Wait until every deployment is `success` in Tarmac; the seconds since `since`."""
    db = Database.from_url(database_url)
    try:
        while True:
            async with db.read() as session:
                statuses = dict(
                    (await session.execute(select(Deployment.id, Deployment.status))).all()
                )
            if all(statuses.get(i) == "success" for i in deployment_ids):
                return time.monotonic() - since
            assert time.monotonic() - since < 120, f"not all success: {statuses}"
            await asyncio.sleep(0.1)
    finally:
        await db.dispose()
