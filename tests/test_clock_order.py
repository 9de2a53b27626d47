"""Times follow the order in which changes of one environment happen: the clock is read once the
environment is locked, so a deployment never ends before it starts and id order is time order,
however many requests race (with the real clock, to the microsecond)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from bot.storage.db import Database
from bot.storage.models import Deployment
from tests.conftest import Api

# SQL is what these tests check: both databases in make test (tests/databases.py).
pytestmark = pytest.mark.both_databases

RACERS = 30


class RealClock:
    """The wall clock, to the microsecond (the suite's TestClock stands still)."""

    def __call__(self) -> datetime:
        return datetime.now(UTC)

    def advance(self, **delta: float) -> None:
        raise AssertionError("the real clock is not moved")


@pytest.fixture
def clock() -> RealClock:
    return RealClock()


async def test_racing_deploys_and_reports_keep_time_in_id_order(api: Api, db: Database) -> None:
    versions = [f"v1-rc{n}" for n in range(RACERS)]
    for version in versions:
        assert (await api.create_rc(version)).status == 201

    deployed = await asyncio.gather(*(api.deploy("production", v) for v in versions))
    reported = await asyncio.gather(*(api.report("production", v, "success") for v in versions))

    assert {reply.status for reply in deployed} == {201}
    assert {reply.status for reply in reported} == {200}
    async with db.read() as session:
        rows = (await session.scalars(select(Deployment).order_by(Deployment.id))).all()
    # Each deploy superseded the one before it; a success reported for a superseded
    # (canceled) one is a deployment of its own.
    assert len(rows) == RACERS + sum(reply.body["kind"] == "reported" for reply in reported)
    ended_early = [
        row.id for row in rows if row.deploy_end_at and row.deploy_end_at < row.deploy_start_at
    ]
    assert ended_early == []
    starts = [row.deploy_start_at for row in rows]
    assert starts == sorted(starts)
