"""Wake after commit: what a transaction enqueues leaves for GitHub at once, not at the next
poll. The worker's poll is set to a minute here, so only the wake can explain a call that
arrives within the bound; on PostgreSQL another replica's worker is woken by LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text

from api.app import create_app
from api.keys import SERVICE
from bot.service import Service
from bot.settings import Settings
from bot.storage.db import OUTBOX_CHANNEL, Database
from bot.storage.outbox_listener import OutboxListener, asyncpg_dsn, reconnect_delay
from tests.conftest import SHA_A, Api, OpenApiConformance, TestClock, Webhooks, make_token
from tests.fake_github import FakeGitHub
from tests.test_github_tags import tag_create, tag_push
from tests.test_github_workflow_runs import run_event

pytestmark = pytest.mark.both_databases

LONG_POLL = 60.0
# Far below the poll above, far above what a wake takes (a few ms) on a busy machine.
BOUND_SECONDS = 3.0


async def arrives(found: Callable[[], bool], bound: float = BOUND_SECONDS) -> float:
    """Seconds until `found()` holds; fails the test past `bound`."""
    started = time.monotonic()
    while not found():
        assert time.monotonic() - started < bound, "not there in time: the wake was lost"
        await asyncio.sleep(0.005)
    return time.monotonic() - started


def dispatches_of(fake: FakeGitHub, workflow: str) -> list[Any]:
    return [r for r in fake.runs.values() if r.workflow == workflow]


@pytest.fixture
def long_poll_settings(github_app_settings: Settings) -> Settings:
    return github_app_settings.model_copy(update={"outbox_poll_seconds": LONG_POLL})


async def serving(aiohttp_client: Any, settings: Settings, clock: TestClock, *, work: bool) -> Any:
    """The app on a loopback server; with `work`, its outbox worker (and the rest of the
    background work) running as in `tarmac serve`."""
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(settings, clock=clock, background_work=work)
    )
    service: Service = client.app[SERVICE]
    if service.outbox_listener is not None:
        await asyncio.wait_for(service.outbox_listener.connected.wait(), BOUND_SECONDS)
    return client


@pytest.fixture
async def working_client(
    aiohttp_client: Any, long_poll_settings: Settings, clock: TestClock, fake_github: FakeGitHub
) -> Any:
    fake_github.clock = clock
    return await serving(aiohttp_client, long_poll_settings, clock, work=True)


async def test_a_tag_push_reaches_github_as_a_build_dispatch_without_waiting_for_the_poll(
    working_client: Any, conformance: OpenApiConformance, fake_github: FakeGitHub
) -> None:
    webhook = Webhooks(working_client, conformance)
    reply = await webhook("push", tag_push("v1.0.0-rc1", SHA_A))
    assert reply.status == 202, reply.body
    await arrives(lambda: len(dispatches_of(fake_github, "build.yml")) == 1)


async def test_what_the_worker_records_wakes_it_too(
    working_client: Any, conformance: OpenApiConformance, fake_github: FakeGitHub
) -> None:
    # A `create` names no commit: the worker reads the tag, and what it records (the RC and
    # its build's dispatch, in the worker's own transaction) goes next, without a poll.
    fake_github.add_tag("acme/backend", "v1.1.0-rc1", SHA_A)
    webhook = Webhooks(working_client, conformance)
    assert (await webhook("create", tag_create("v1.1.0-rc1"))).status == 202
    await arrives(lambda: len(dispatches_of(fake_github, "build.yml")) == 1)


async def test_a_completed_build_reaches_github_as_the_auto_deployment_without_the_poll(
    working_client: Any, conformance: OpenApiConformance, fake_github: FakeGitHub
) -> None:
    webhook = Webhooks(working_client, conformance)
    await webhook("push", tag_push("v1.2.0-rc1", SHA_A))
    await arrives(lambda: len(dispatches_of(fake_github, "build.yml")) == 1)
    [build] = dispatches_of(fake_github, "build.yml")
    reply = await webhook("workflow_run", run_event("completed", build, "success"))
    assert reply.body["outcome"].endswith("auto-deployed to staging")
    await arrives(lambda: len(fake_github.deployments.get("acme/backend", [])) == 1)


async def test_a_rest_deploy_reaches_github_without_the_poll(
    working_client: Any, conformance: OpenApiConformance, db: Database, fake_github: FakeGitHub
) -> None:
    api = Api(working_client, conformance)
    api.token = await make_token(db, "ci", actor="ci@example.com")
    created = await api.create_rc("v2.0.0-rc1", trigger_build_workflow=False)
    assert created.status == 201, created.body
    assert (await api.deploy("production", "v2.0.0-rc1")).status == 201
    await arrives(lambda: len(fake_github.deployments.get("acme/backend", [])) == 1)


# --- PostgreSQL: several replicas ------------------------------------------------------------


@pytest.fixture
def postgresql_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")


async def test_another_replicas_worker_delivers_a_rest_deploy_at_once(
    postgresql_only: None,
    aiohttp_client: Any,
    long_poll_settings: Settings,
    clock: TestClock,
    fake_github: FakeGitHub,
    conformance: OpenApiConformance,
    db: Database,
) -> None:
    fake_github.clock = clock
    # Replica A takes the request and runs no worker; B's worker, polling once a minute, can
    # only have heard of A's commit through PostgreSQL.
    replica_a = await serving(aiohttp_client, long_poll_settings, clock, work=False)
    replica_b = await serving(aiohttp_client, long_poll_settings, clock, work=True)
    listener = replica_b.app[SERVICE].outbox_listener
    assert listener is not None
    api = Api(replica_a, conformance)
    api.token = await make_token(db, "ci", actor="ci@example.com")
    assert (await api.create_rc("v3.0.0-rc1", trigger_build_workflow=False)).status == 201
    assert (await api.deploy("production", "v3.0.0-rc1")).status == 201
    await arrives(lambda: len(fake_github.deployments.get("acme/backend", [])) == 1)
    assert listener.notified >= 1


@pytest.fixture
async def listening(
    postgresql_only: None, database_url: str
) -> AsyncIterator[tuple[OutboxListener, list[None]]]:
    woken: list[None] = []
    listener = OutboxListener(database_url, "this-process", lambda: woken.append(None))
    task = asyncio.create_task(listener.run())
    await asyncio.wait_for(listener.connected.wait(), BOUND_SECONDS)
    yield listener, woken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def announce(database_url: str, origin: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await connection.execute("SELECT pg_notify($1, $2)", OUTBOX_CHANNEL, origin)
    finally:
        await connection.close()


async def test_the_listener_wakes_for_other_processes_not_its_own(
    listening: tuple[OutboxListener, list[None]], database_url: str
) -> None:
    listener, woken = listening
    await arrives(lambda: len(woken) == 1)  # once on connecting, for what it may have missed
    await announce(database_url, "this-process")
    await announce(database_url, "another-replica")
    await arrives(lambda: listener.notified == 1)
    assert len(woken) == 2


async def test_the_listener_connects_again_when_its_connection_is_lost(
    listening: tuple[OutboxListener, list[None]], database_url: str, db: Database
) -> None:
    listener, woken = listening
    async with db.engine.connect() as connection:
        await connection.execute(
            text("SELECT pg_terminate_backend(:pid)"), {"pid": listener.server_pid}
        )
    await arrives(lambda: listener.connections == 2)
    await asyncio.wait_for(listener.connected.wait(), BOUND_SECONDS)
    await announce(database_url, "another-replica")
    await arrives(lambda: listener.notified == 1)
    assert len(woken) == 3  # two connections, one notification


def test_reconnecting_backs_off_up_to_a_few_seconds() -> None:
    assert [reconnect_delay(n) for n in range(4)] == [0.0, 0.1, 0.2, 0.4]
    assert reconnect_delay(50) == 5.0
