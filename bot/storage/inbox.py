"""The webhook inbox (`webhook_inbox`): verified deliveries as they came, in arrival order.

The webhook endpoint appends each delivery and answers once that is committed; the inbox's
reader (bot/github/inbound/inbox.py) takes the oldest rows, handles them and deletes them in
the transaction that stores their effects, so a delivery is handled once whether the process
dies before, during or after. On PostgreSQL every reader's transaction first takes one
transaction-scoped advisory lock: the replicas take turns, and rows are handled in id order
across them. Ids only grow among the rows present (SQLite's rowid is the largest plus one, a
PostgreSQL sequence never goes back), so id order is the order the appends committed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.models import WebhookInboxItem

# Any constant both sides agree on; the migration's and the projects sync's are others.
INBOX_ADVISORY_LOCK = 0x7461726D_6163_0013

_TABLE: Table = WebhookInboxItem.__table__  # type: ignore[assignment]
_COLUMNS = (
    _TABLE.c.id,
    _TABLE.c.delivery_id,
    _TABLE.c.event,
    _TABLE.c.body,
    _TABLE.c.received_at,
)

# Built once: building a statement costs more than running it (the appends run per batch).
_APPENDS: dict[str, Any] = {
    name: dialect.insert(_TABLE).on_conflict_do_nothing(index_elements=["delivery_id"])
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_OLDEST = select(*_COLUMNS).order_by(_TABLE.c.id).limit(bindparam("limit"))
_BY_ID = select(*_COLUMNS).where(_TABLE.c.id == bindparam("id"))
_REMOVE = delete(_TABLE).where(_TABLE.c.id.in_(bindparam("ids", expanding=True)))
_WAITING = select(_TABLE.c.delivery_id).where(
    _TABLE.c.delivery_id.in_(bindparam("delivery_ids", expanding=True))
)
_ANY = select(_TABLE.c.id).limit(1)
_TAKE_TURN = text("SELECT pg_advisory_xact_lock(:key)")


@dataclass(frozen=True)
class Arrival:
    """A verified delivery to append: its id, event and body (JSON, as it came)."""

    delivery_id: str
    event: str
    body: bytes


@dataclass(frozen=True)
class Stored:
    """A delivery in the inbox."""

    id: int
    delivery_id: str
    event: str
    body: bytes
    received_at: datetime


async def append(session: AsyncSession, arrivals: Sequence[Arrival], now: datetime) -> None:
    """Store the deliveries, in their order, with one statement; one already in the inbox
    (a copy that came before it was handled) is left as it is."""
    dialect = session.get_bind().dialect.name
    rows = [
        {"delivery_id": a.delivery_id, "event": a.event, "body": a.body, "received_at": now}
        for a in arrivals
    ]
    await session.execute(_APPENDS[dialect], rows)


async def take_turn(session: AsyncSession) -> None:
    """Wait for any other replica's reader to commit; then this transaction holds the turn."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(_TAKE_TURN, {"key": INBOX_ADVISORY_LOCK})


async def oldest(session: AsyncSession, limit: int) -> list[Stored]:
    rows = await session.execute(_OLDEST, {"limit": limit})
    return [Stored(*row) for row in rows]


async def stored(session: AsyncSession, item_id: int) -> Stored | None:
    row = (await session.execute(_BY_ID, {"id": item_id})).first()
    return Stored(*row) if row is not None else None


async def remove(session: AsyncSession, item_ids: Sequence[int]) -> None:
    await session.execute(_REMOVE, {"ids": list(item_ids)})


async def waiting(session: AsyncSession, delivery_ids: Sequence[str]) -> set[str]:
    """Which of these deliveries are still in the inbox."""
    if not delivery_ids:
        return set()
    return set((await session.scalars(_WAITING, {"delivery_ids": list(delivery_ids)})).all())


async def is_empty(session: AsyncSession) -> bool:
    return (await session.execute(_ANY)).first() is None
