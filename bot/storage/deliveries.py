"""Webhook deliveries, by `X-GitHub-Delivery`: each one takes effect once.

GitHub keeps the delivery id when a delivery is sent again (by hand, or by a script that
redelivers failures), so the id is the key against replays. The rows of a batch of deliveries
(bot/github/inbound/intake.py) are written first, inside the batch's transaction, with one `INSERT …
ON CONFLICT DO NOTHING`: of two identical deliveries arriving together on two PostgreSQL
replicas, the second one's insert waits for the first transaction and then finds the row (or
takes over if the first rolled back); on SQLite `Database.write()` serialises them, and within
one server a batch never holds the same id twice. Either way one of them dispatches and the
other answers "duplicate".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.lookup import dialect_insert
from bot.storage.models import WebhookDelivery

# Placeholder outcome while the delivery is being handled; only its own transaction sees it.
PROCESSING = "processing"
MAX_ID_LENGTH = 100
MAX_EVENT_LENGTH = 100


@dataclass(frozen=True)
class Claim:
    """A delivery about to be handled: what its row records."""

    delivery_id: str
    event: str
    action: str | None
    received_at: datetime  # when it was stored in the inbox (GitHub's answer left then)
    # What became of it: known already for a delivery no handler acts on (recorded at intake,
    # bot/github/inbound/triage.py), else set by `record_outcomes` once it has been handled.
    outcome: str = PROCESSING


_TABLE: Table = WebhookDelivery.__table__  # type: ignore[assignment]


async def claim_deliveries(session: AsyncSession, claims: Sequence[Claim]) -> set[str]:
    """Record several deliveries with one statement; the ids that were not recorded before.

    The ids must be distinct (a batch holds one delivery per id).
    """
    statement = (
        dialect_insert(session)(_TABLE)
        .on_conflict_do_nothing(index_elements=["delivery_id"])
        .returning(_TABLE.c.delivery_id)
    )
    rows = [
        {
            "delivery_id": c.delivery_id,
            "event": c.event[:MAX_EVENT_LENGTH],
            "action": c.action[:MAX_EVENT_LENGTH] if c.action is not None else None,
            "outcome": c.outcome,
            "received_at": c.received_at,
        }
        for c in claims
    ]
    result = await session.execute(statement, rows)
    return set(result.scalars())


async def record_outcomes(session: AsyncSession, outcomes: dict[str, str]) -> None:
    """Store each delivery's outcome (delivery id -> outcome) with one statement."""
    if not outcomes:
        return
    statement = (
        update(_TABLE)
        .where(_TABLE.c.delivery_id == bindparam("b_delivery_id"))
        .values(outcome=bindparam("b_outcome"))
    )
    await session.execute(
        statement,
        [{"b_delivery_id": d, "b_outcome": o} for d, o in outcomes.items()],
        execution_options={"synchronize_session": False},
    )


async def recorded_outcomes(session: AsyncSession, delivery_ids: Sequence[str]) -> dict[str, str]:
    """The stored outcome of each of these deliveries that has a row."""
    if not delivery_ids:
        return {}
    rows = await session.execute(
        select(_TABLE.c.delivery_id, _TABLE.c.outcome).where(_TABLE.c.delivery_id.in_(delivery_ids))
    )
    return dict(rows.all())
