"""Group commit of webhook deliveries (bot/github/inbound/intake.py): concurrent deliveries share a
transaction, yet each is committed, fails, or is found a duplicate as if it had come alone."""

from __future__ import annotations

import asyncio
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
from bot.github.inbound.intake import DeliveryIntake, Handled
from bot.github.inbound.router import dispatch
from bot.service import Service, open_service
from bot.settings import Settings
from bot.storage.models import ReleaseCandidate, WebhookDelivery
from tests.conftest import PROJECTS_YAML, SHA_A, TestClock
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


async def handle_together(
    intake: DeliveryIntake, events: list[sansio.Event]
) -> list[Handled | BaseException]:
    calls = (intake.handle(e, None) for e in events)
    async with asyncio.timeout(TIMEOUT_SECONDS):
        return await asyncio.gather(*calls, return_exceptions=True)


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
    intake = DeliveryIntake(service.db, service.projects, clock, mirror=MIRRORED)
    events = [pushed_tag(n) for n in range(DELIVERIES)]

    results = await handle_together(intake, events)
    await intake.close()

    assert all(isinstance(r, Handled) and r.claimed for r in results)
    assert intake.transactions < DELIVERIES
    outcomes, versions = await stored(service)
    assert versions == {f"v1.{n}.0-rc1" for n in range(DELIVERIES)}
    assert set(outcomes) == {e.delivery_id for e in events}
    for result in results:
        assert isinstance(result, Handled)
        assert outcomes[result.context.delivery_id] == result.context.outcome()
        assert "created" in result.context.outcome()


async def test_a_delivery_whose_handler_fails_fails_alone(
    service: Service, clock: TestClock
) -> None:
    failing = "delivery-3"

    async def dispatch_failing_one(event: sansio.Event, **kwargs: Any) -> Any:
        result = await dispatch(event, **kwargs)  # its changes are made, then rolled back
        if event.delivery_id == failing:
            raise RuntimeError("handler bug")
        return result

    intake = DeliveryIntake(
        service.db, service.projects, clock, mirror=MIRRORED, dispatch_event=dispatch_failing_one
    )
    events = [pushed_tag(n) for n in range(DELIVERIES)]

    results = await handle_together(intake, events)
    await intake.close()

    by_id = dict(zip((e.delivery_id for e in events), results, strict=True))
    assert isinstance(by_id.pop(failing), RuntimeError)
    assert all(isinstance(r, Handled) and r.claimed for r in by_id.values())
    outcomes, versions = await stored(service)
    assert set(outcomes) == set(by_id)
    assert versions == {f"v1.{n}.0-rc1" for n in range(DELIVERIES) if n != 3}
    assert "processing" not in outcomes.values()


async def test_two_copies_of_a_delivery_together_make_one_effect(
    service: Service, clock: TestClock
) -> None:
    intake = DeliveryIntake(service.db, service.projects, clock, mirror=MIRRORED)
    events = [pushed_tag(1, "same"), pushed_tag(1, "same"), pushed_tag(2)]

    first, second, other = await handle_together(intake, events)
    await intake.close()

    assert isinstance(first, Handled)
    assert isinstance(second, Handled)
    assert isinstance(other, Handled)
    # Either copy may be the one handled (on PostgreSQL two batches run side by side).
    handled, duplicate = (first, second) if first.claimed else (second, first)
    assert handled.claimed
    assert not duplicate.claimed
    assert duplicate.previous_outcome == handled.context.outcome()
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
    intake = DeliveryIntake(service.db, service.projects, clock, mirror=MIRRORED)
    tag = tag_push("v1-rc1", SHA_A)
    tag["repository"]["full_name"] = "acme/newcomer"

    [before] = await handle_together(intake, [sansio.Event(tag, event="push", delivery_id="a")])
    newer = PROJECTS_YAML + (
        "  - name: Newcomer\n    repo: acme/newcomer\n    environments:\n      - name: production\n"
    )
    config = parse_projects(yaml.safe_load(newer), Path("tarmac.yml"))
    async with service.db.write() as session:
        await sync_projects(session, config, clock())
    [after] = await handle_together(intake, [sansio.Event(tag, event="push", delivery_id="b")])
    await intake.close()

    assert isinstance(before, Handled)
    assert isinstance(after, Handled)
    assert before.context.outcome() == "ignored: tag v1-rc1 is no release candidate of a project"
    assert after.context.outcome() == "release candidate Newcomer v1-rc1 created; ready"
