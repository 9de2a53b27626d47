"""The webhook inbox: concurrent deliveries share an append (bot/github/inbound/intake.py) and are
handled from the inbox in shared transactions (bot/github/inbound/inbox.py), yet each is
committed, fails, or is found a duplicate as if it had come alone; in arrival order, and once
across a restart."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from gidgethub import sansio
from sqlalchemy import select

from bot.app.operations import Mirror
from bot.config.projects_file import parse_projects
from bot.config.projects_sync import sync_projects
from bot.github.inbound.inbox import Handled, InboxReader
from bot.github.inbound.intake import DeliveryIntake
from bot.github.inbound.router import dispatch
from bot.service import Service, open_service
from bot.settings import Settings
from bot.storage.gauges import read_stored_state
from bot.storage.models import ReleaseCandidate, WebhookDelivery, WebhookInboxItem
from tests.conftest import PROJECTS_YAML, SHA_A, TestClock
from tests.test_calendar import until
from tests.test_github_tags import tag_push

# SQL is what these tests check: both databases in make test (tests/databases.py).
pytestmark = pytest.mark.both_databases

DELIVERIES = 12
# Webhooks arrive only with a GitHub App configured: changes are mirrored.
MIRRORED = Mirror(enabled=True)
TIMEOUT_SECONDS = 30


@pytest.fixture
async def service(settings: Settings, clock: TestClock) -> AsyncIterator[Service]:
    opened = await open_service(settings, clock=clock)
    yield opened
    await opened.close()


def pushed_tag(number: int, delivery_id: str | None = None) -> sansio.Event:
    payload = tag_push(f"v1.{number}.0-rc1", SHA_A)
    return sansio.Event(payload, event="push", delivery_id=delivery_id or f"delivery-{number}")


class Inbox:
    """An intake and its reader, as the webhook endpoint has them."""

    def __init__(self, service: Service, clock: TestClock, **reader: Any) -> None:
        self.reader = InboxReader(service.db, service.projects, clock, mirror=MIRRORED, **reader)
        self.intake = DeliveryIntake(
            service.db, self.reader, service.projects, clock, answer_wait=TIMEOUT_SECONDS
        )
        self.reader.start()

    async def handle(self, event: sansio.Event) -> Handled | None:
        return await self.intake.handle(event, json.dumps(event.data).encode("utf-8"))

    async def close(self) -> None:
        await self.intake.close()
        await self.reader.close()


async def handle_together(inbox: Inbox, events: list[sansio.Event]) -> list[Any]:
    async with asyncio.timeout(TIMEOUT_SECONDS):
        return await asyncio.gather(*(inbox.handle(e) for e in events), return_exceptions=True)


async def stored(service: Service) -> tuple[dict[str, str], set[str]]:
    """Each delivery row's outcome by id; the versions of the RCs."""
    async with service.db.read() as session:
        rows = await session.scalars(select(WebhookDelivery))
        outcomes = {r.delivery_id: r.outcome for r in rows}
        versions = set(await session.scalars(select(ReleaseCandidate.version)))
    return outcomes, versions


async def test_concurrent_deliveries_share_transactions_and_each_is_committed(
    service: Service, clock: TestClock
) -> None:
    inbox = Inbox(service, clock)
    events = [pushed_tag(n) for n in range(DELIVERIES)]

    results = await handle_together(inbox, events)
    await inbox.close()

    assert all(isinstance(r, Handled) and r.claimed for r in results)
    assert inbox.intake.transactions < DELIVERIES
    assert inbox.reader.transactions < DELIVERIES
    outcomes, versions = await stored(service)
    assert versions == {f"v1.{n}.0-rc1" for n in range(DELIVERIES)}
    assert set(outcomes) == {e.delivery_id for e in events}
    for event, result in zip(events, results, strict=True):
        assert outcomes[event.delivery_id] == result.outcome
        assert "created" in result.outcome
    assert await left_in_inbox(service) == []


async def test_a_delivery_whose_handler_fails_fails_alone(
    service: Service, clock: TestClock
) -> None:
    failing = "delivery-3"

    async def dispatch_failing_one(event: sansio.Event, **kwargs: Any) -> Any:
        result = await dispatch(event, **kwargs)  # its changes are made, then rolled back
        if event.delivery_id == failing:
            raise RuntimeError("handler bug")
        return result

    inbox = Inbox(service, clock, dispatch_event=dispatch_failing_one)
    events = [pushed_tag(n) for n in range(DELIVERIES)]

    results = await handle_together(inbox, events)
    await inbox.close()

    by_id = dict(zip((e.delivery_id for e in events), results, strict=True))
    assert isinstance(by_id.pop(failing), RuntimeError)
    assert all(isinstance(r, Handled) and r.claimed for r in by_id.values())
    outcomes, versions = await stored(service)
    assert set(outcomes) == set(by_id)
    assert versions == {f"v1.{n}.0-rc1" for n in range(DELIVERIES) if n != 3}
    assert "processing" not in outcomes.values()
    assert await left_in_inbox(service) == []  # dropped: GitHub shows it failed (500)


async def test_two_copies_of_a_delivery_together_make_one_effect(
    service: Service, clock: TestClock
) -> None:
    inbox = Inbox(service, clock)
    events = [pushed_tag(1, "same"), pushed_tag(1, "same"), pushed_tag(2)]

    first, second, other = await handle_together(inbox, events)
    await inbox.close()

    assert isinstance(first, Handled)
    assert isinstance(second, Handled)
    assert isinstance(other, Handled)
    # The first copy is the one handled; the second waited beside it.
    assert first.claimed
    assert not second.claimed
    assert second.outcome == first.outcome
    assert other.claimed
    outcomes, versions = await stored(service)
    assert set(outcomes) == {"same", "delivery-2"}
    assert versions == {"v1.1.0-rc1", "v1.2.0-rc1"}


async def test_a_project_another_replica_adds_gets_its_tags_from_the_next_batch(
    service: Service, clock: TestClock
) -> None:
    # Which repositories have projects is read once per batch, inside its transaction: a
    # replica started before another one synced a new projects file does not ignore the new
    # project's tags.
    inbox = Inbox(service, clock)
    tag = tag_push("v1-rc1", SHA_A)
    tag["repository"]["full_name"] = "acme/newcomer"

    [before] = await handle_together(inbox, [sansio.Event(tag, event="push", delivery_id="a")])
    newer = PROJECTS_YAML + (
        "  - name: Newcomer\n    repo: acme/newcomer\n    environments:\n      - name: production\n"
    )
    config = parse_projects(yaml.safe_load(newer), Path("tarmac.yml"))
    async with service.db.write() as session:
        await sync_projects(session, config, clock())
    [after] = await handle_together(inbox, [sansio.Event(tag, event="push", delivery_id="b")])
    await inbox.close()

    assert isinstance(before, Handled)
    assert isinstance(after, Handled)
    assert before.outcome == "ignored: tag v1-rc1 is no release candidate of a project"
    assert after.outcome == "release candidate Newcomer v1-rc1 created; ready"


async def left_in_inbox(service: Service) -> list[str]:
    async with service.db.read() as session:
        return list(await session.scalars(select(WebhookInboxItem.delivery_id)))


async def test_deliveries_are_handled_in_the_order_they_came(
    service: Service, clock: TestClock
) -> None:
    # Batches of at most five: the order holds across batches, not only within one.
    inbox = Inbox(service, clock, max_batch=5)
    events = [pushed_tag(n) for n in range(DELIVERIES)]

    await handle_together(inbox, events)
    await inbox.close()

    async with service.db.read() as session:
        created = list(
            await session.scalars(select(ReleaseCandidate.version).order_by(ReleaseCandidate.id))
        )
    assert created == [f"v1.{n}.0-rc1" for n in range(DELIVERIES)]


async def test_what_a_stopped_reader_left_in_the_inbox_is_handled_once_at_the_next_start(
    service: Service, clock: TestClock
) -> None:
    # A server answered these (stored), then stopped before its reader took them: as if
    # killed, nothing of them handled. A redelivery of one came meanwhile.
    stopped = InboxReader(service.db, service.projects, clock, mirror=MIRRORED)
    intake = DeliveryIntake(service.db, stopped, service.projects, clock, answer_wait=0)
    events = [pushed_tag(n) for n in range(3)] + [pushed_tag(1)]
    for event in events:
        assert await intake.handle(event, json.dumps(event.data).encode("utf-8")) is None
    await intake.close()
    assert await left_in_inbox(service) == [e.delivery_id for e in events[:3]]
    async with service.db.read() as session:
        assert (await read_stored_state(session, clock())).inbox_pending == 3  # the gauge

    restarted = Inbox(service, clock)
    await wait_until_empty(service)
    await restarted.close()

    outcomes, versions = await stored(service)
    assert versions == {"v1.0.0-rc1", "v1.1.0-rc1", "v1.2.0-rc1"}
    assert set(outcomes) == {"delivery-0", "delivery-1", "delivery-2"}


async def wait_until_empty(service: Service) -> None:
    async def empty() -> bool:
        return await left_in_inbox(service) == []

    await until(empty, "the inbox drained", TIMEOUT_SECONDS)


async def test_a_delivery_another_replicas_reader_handled_is_answered_from_its_row(
    service: Service, clock: TestClock
) -> None:
    # This process stored it and waits for the outcome; the other replica's reader took the
    # inbox's turn first and handled it.
    here = InboxReader(service.db, service.projects, clock, mirror=MIRRORED)
    there = InboxReader(service.db, service.projects, clock, mirror=MIRRORED)
    intake = DeliveryIntake(service.db, here, service.projects, clock, answer_wait=TIMEOUT_SECONDS)
    event = pushed_tag(7)
    waiting = asyncio.create_task(intake.handle(event, json.dumps(event.data).encode("utf-8")))

    async def stored_here() -> bool:
        return await left_in_inbox(service) == [event.delivery_id]

    await until(stored_here, "the delivery stored", TIMEOUT_SECONDS)
    assert await there.drain_once() is False
    assert not waiting.done()
    await here.drain_once()  # finds the inbox empty: answers from the stored row

    answer = await asyncio.wait_for(waiting, TIMEOUT_SECONDS)
    await intake.close()
    assert answer == Handled(True, "release candidate Backend v1.7.0-rc1 created; building")
