"""Webhook deliveries, by `X-GitHub-Delivery`: each one takes effect once.

GitHub keeps the delivery id when a delivery is sent again (by hand, or by a script that
redelivers failures), so the id is the key against replays. The row is written first, inside
the caller's transaction, with `INSERT … ON CONFLICT DO NOTHING`: of two identical deliveries
arriving together on PostgreSQL, the second one's insert waits for the first transaction and
then finds the row (or takes over if the first rolled back); on SQLite `Database.write()`
serialises them. Either way one of them dispatches and the other answers "duplicate".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import WebhookDelivery

# Placeholder outcome while the delivery is being handled; only its own transaction sees it.
PROCESSING = "processing"
MAX_ID_LENGTH = 100
MAX_EVENT_LENGTH = 100


def _insert(session: AsyncSession) -> Any:
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def claim_delivery(
    session: AsyncSession, *, delivery_id: str, event: str, action: str | None, now: datetime
) -> bool:
    """Record the delivery; False when it was recorded before (a redelivery: do nothing)."""
    statement = (
        _insert(session)(WebhookDelivery)
        .values(
            delivery_id=delivery_id,
            event=event[:MAX_EVENT_LENGTH],
            action=action[:MAX_EVENT_LENGTH] if action is not None else None,
            outcome=PROCESSING,
            received_at=now,
        )
        .on_conflict_do_nothing(index_elements=["delivery_id"])
        .returning(WebhookDelivery.delivery_id)
    )
    inserted = (await session.execute(statement)).scalar_one_or_none()
    return inserted is not None


async def record_outcome(session: AsyncSession, delivery_id: str, outcome: str) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.delivery_id == delivery_id)
        .values(outcome=outcome)
    )


async def find_delivery(session: AsyncSession, delivery_id: str) -> WebhookDelivery | None:
    return (
        await session.execute(
            select(WebhookDelivery).where(WebhookDelivery.delivery_id == delivery_id)
        )
    ).scalar_one_or_none()
