"""Nothing missed while Tarmac was down: failed webhook deliveries Tarmac never recorded are
redelivered once, and active deployments whose run fell silent follow what GitHub says."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.keys import SERVICE
from bot.app.operations import Mirror
from bot.github.client import GitHubClient
from bot.github.outbound.catch_up import (
    FIRST_WINDOW,
    MAX_LOOKBACK,
    OVERLAP,
    DeliveryCatchUp,
    catch_up_since,
    reconcile_silent_runs,
    redeliver_missed,
)
from bot.github.outbound.worker import OutboxWorker
from bot.service import Service
from bot.storage.db import Database
from bot.storage.models import WebhookDelivery
from tests.conftest import Api, TestClock, Webhooks, github_payload
from tests.fake_github import FakeGitHub

# SQL is what these tests check: both databases in make test (tests/databases.py).
pytestmark = pytest.mark.both_databases

WINDOW = timedelta(hours=1)
QUIET_FOR = timedelta(minutes=5)


def service_of(github_client: TestClient[Any, Any]) -> tuple[Service, GitHubClient]:
    service: Service = github_client.app[SERVICE]
    assert service.github is not None
    return service, service.github


class Deliveries:
    """The App's delivery log on the fake GitHub, as `GET /app/hook/deliveries` lists it."""

    def __init__(self, fake: FakeGitHub, clock: TestClock) -> None:
        self.fake = fake
        self.clock = clock
        self.next_id = 5000

    def add(
        self, status_code: int, *, guid: str | None = None, ago: timedelta = timedelta(minutes=1)
    ) -> dict[str, Any]:
        self.next_id += 1
        at: datetime = self.clock() - ago
        delivery = {
            "id": self.next_id,
            "guid": guid or str(uuid.uuid4()),
            "delivered_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "redelivery": guid is not None,
            "duration": 0.1,
            "status": "OK" if status_code < 300 else "Invalid HTTP Response: 502",
            "status_code": status_code,
            "event": "workflow_run",
            "action": "completed",
            "installation_id": 11,
            "repository_id": 1,
        }
        self.fake.hook_deliveries.append(delivery)
        return delivery


async def test_failed_deliveries_tarmac_never_recorded_are_redelivered_once(
    github_client: TestClient[Any, Any],
    fake_github: FakeGitHub,
    webhook: Webhooks,
    clock: TestClock,
) -> None:
    service, client = service_of(github_client)
    log = Deliveries(fake_github, clock)
    missed = log.add(502)
    missed_twice = log.add(502, ago=timedelta(minutes=30))
    missed_twice_again = log.add(0, guid=missed_twice["guid"], ago=timedelta(minutes=20))
    recorded = log.add(504)
    assert (await webhook("ping", github_payload("ping"), recorded["guid"])).status == 200
    healed = log.add(502, ago=timedelta(minutes=10))
    log.add(200, guid=healed["guid"], ago=timedelta(minutes=5))
    log.add(200)
    log.add(502, ago=timedelta(hours=2))  # older than the window
    asked: set[str] = set()

    count = await redeliver_missed(service.db, client, clock, since=clock() - WINDOW, asked=asked)

    assert count == 2
    assert sorted(fake_github.redelivered) == sorted([missed["id"], missed_twice_again["id"]])
    assert all(call.auth == "jwt" for call in fake_github.calls_to("POST", r"/attempts$"))

    again = await redeliver_missed(service.db, client, clock, since=clock() - WINDOW, asked=asked)

    assert again == 0
    assert len(fake_github.redelivered) == 2


async def test_deliveries_are_read_page_by_page_back_to_the_window(
    github_client: TestClient[Any, Any], fake_github: FakeGitHub, clock: TestClock
) -> None:
    service, client = service_of(github_client)
    log = Deliveries(fake_github, clock)
    old = [log.add(502, ago=timedelta(minutes=200 - i / 10)) for i in range(150)]
    recent = [log.add(502, ago=timedelta(minutes=50 - i / 10)) for i in range(150)]

    count = await redeliver_missed(service.db, client, clock, since=clock() - WINDOW, asked=set())

    assert count == 150
    assert sorted(fake_github.redelivered) == [d["id"] for d in recent]
    pages = fake_github.calls_to("GET", r"^/app/hook/deliveries$")
    # 300 deliveries, 100 a page: the second page reaches past the window, so no third.
    assert len(pages) == 2
    assert pages[0].query == {"per_page": "100"}
    assert pages[1].query == {"per_page": "100", "cursor": f"v1_{recent[49]['id']}"}
    assert not set(fake_github.redelivered) & {d["id"] for d in old}


async def record_delivery(db: Database, received_at: datetime) -> None:
    async with db.write() as session:
        session.add(
            WebhookDelivery(
                delivery_id=str(uuid.uuid4()),
                event="ping",
                action=None,
                outcome="pong",
                received_at=received_at,
            )
        )


async def test_the_first_round_reaches_back_to_the_newest_recorded_delivery(
    db: Database, clock: TestClock
) -> None:
    now = clock()
    assert await catch_up_since(db, now, DeliveryCatchUp()) == now - FIRST_WINDOW

    await record_delivery(db, now - timedelta(hours=7))
    await record_delivery(db, now - timedelta(hours=5))

    # Down for five hours: the whole downtime is listed, not only the last hour.
    assert await catch_up_since(db, now, DeliveryCatchUp()) == now - timedelta(hours=5) - OVERLAP


async def test_the_lookback_is_bounded_and_later_rounds_start_at_the_round_before(
    db: Database, clock: TestClock
) -> None:
    now = clock()
    await record_delivery(db, now - timedelta(days=20))
    assert await catch_up_since(db, now, DeliveryCatchUp()) == now - MAX_LOOKBACK

    state = DeliveryCatchUp(previous_round_at=now - timedelta(minutes=3))
    assert await catch_up_since(db, now, state) == now - timedelta(minutes=3) - OVERLAP


async def deployed_with_run(github_api: Api, outbox: OutboxWorker, fake: FakeGitHub) -> int:
    """Deploy v1-rc1 to production and let the outbox dispatch its run; the deployment id."""
    assert (await github_api.create_rc("v1-rc1")).status == 201
    deployed = await github_api.deploy("production", "v1-rc1")
    assert deployed.status == 201, deployed.body
    await outbox.drain()
    assert len(fake.runs) == 1
    return int(deployed.body["id"])


async def deployment_status(github_api: Api, deployment_id: int) -> str:
    listed = await github_api.deployments("production")
    [found] = [d for d in listed.body if d["id"] == deployment_id]
    return str(found["status"])


def github_states(fake: FakeGitHub) -> list[str]:
    [mirror] = fake.deployments["acme/backend"]
    return [s["state"] for s in fake.statuses[mirror["id"]]]


async def test_a_silent_completed_run_ends_its_deployment(
    github_client: TestClient[Any, Any],
    github_api: Api,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    clock: TestClock,
) -> None:
    service, client = service_of(github_client)
    deployment_id = await deployed_with_run(github_api, outbox, fake_github)
    [run] = fake_github.runs.values()
    run.status, run.conclusion = "completed", "success"
    clock.advance(minutes=6)

    changed = await reconcile_silent_runs(
        service.db, client, clock, Mirror(enabled=True), quiet_for=QUIET_FOR
    )
    await outbox.drain()

    assert changed == 1
    assert await deployment_status(github_api, deployment_id) == "success"
    assert github_states(fake_github)[-1] == "success"
    [looked_up] = fake_github.calls_to("GET", rf"/actions/runs/{run.id}$")
    assert looked_up.auth == "installation:11"


async def test_a_silent_run_still_going_makes_its_deployment_in_progress(
    github_client: TestClient[Any, Any],
    github_api: Api,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    clock: TestClock,
) -> None:
    service, client = service_of(github_client)
    deployment_id = await deployed_with_run(github_api, outbox, fake_github)
    assert await deployment_status(github_api, deployment_id) == "pending"
    clock.advance(minutes=6)  # the run is still `queued` on the fake

    changed = await reconcile_silent_runs(
        service.db, client, clock, Mirror(enabled=True), quiet_for=QUIET_FOR
    )

    assert changed == 1
    assert await deployment_status(github_api, deployment_id) == "in_progress"


async def test_a_run_github_does_not_know_leaves_its_deployment_alone(
    github_client: TestClient[Any, Any],
    github_api: Api,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    clock: TestClock,
) -> None:
    service, client = service_of(github_client)
    deployment_id = await deployed_with_run(github_api, outbox, fake_github)
    fake_github.runs.clear()
    clock.advance(minutes=6)

    changed = await reconcile_silent_runs(
        service.db, client, clock, Mirror(enabled=True), quiet_for=QUIET_FOR
    )

    assert changed == 0
    assert len(fake_github.calls_to("GET", r"/actions/runs/\d+$")) == 1
    assert await deployment_status(github_api, deployment_id) == "pending"


async def test_a_recently_updated_deployment_is_not_looked_up(
    github_client: TestClient[Any, Any],
    github_api: Api,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    clock: TestClock,
) -> None:
    service, client = service_of(github_client)
    deployment_id = await deployed_with_run(github_api, outbox, fake_github)
    [run] = fake_github.runs.values()
    run.status, run.conclusion = "completed", "success"
    clock.advance(minutes=4)

    changed = await reconcile_silent_runs(
        service.db, client, clock, Mirror(enabled=True), quiet_for=QUIET_FOR
    )

    assert changed == 0
    assert fake_github.calls_to("GET", r"/actions/runs/\d+$") == []
    assert await deployment_status(github_api, deployment_id) == "pending"
