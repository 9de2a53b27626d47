"""Idempotency keys: a retried write answers what the first one answered, and changes nothing.

A client sends the same `Idempotency-Key` with every retry of one request (Stripe's convention,
and the IETF httpapi draft's). Keys belong to the token that sent them. The answer is stored
in the same transaction as the change it answers, so a committed change always has its
answer stored and a retry can never make the change twice. Keys are kept 24 hours.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.clock import Clock
from bot.storage.db import Database
from bot.storage.models import IdempotencyKey

log = logging.getLogger(__name__)

KEY_LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 255
PURGE_INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    body: str
    fingerprint: str


class Replay(Enum):
    SAME_REQUEST = "same"  # answer with the stored answer
    OTHER_REQUEST = "other"  # the key was used for another request: refuse


def is_valid_key(key: str) -> bool:
    """1 to 255 printable ASCII characters (a UUID, a pipeline's run id and attempt, …)."""
    return 0 < len(key) <= MAX_KEY_LENGTH and key.isascii() and key.isprintable()


def request_fingerprint(method: str, path_and_query: str, body: bytes) -> str:
    """What makes two requests the same request: method, path with query, and body bytes."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path_and_query.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def replay_for(stored: StoredAnswer, fingerprint: str) -> Replay:
    """A stored key answers a request only if it is the request the key was first sent with."""
    return Replay.SAME_REQUEST if stored.fingerprint == fingerprint else Replay.OTHER_REQUEST


async def find_answer(
    session: AsyncSession, token_id: int, key: str, now: datetime
) -> StoredAnswer | None:
    """The stored answer for the token's key, unless it expired."""
    row = await session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.token_id == token_id,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at > now - KEY_LIFETIME,
        )
    )
    if row is None:
        return None
    return StoredAnswer(status=row.status, body=row.body, fingerprint=row.fingerprint)


async def remember_answer(
    session: AsyncSession,
    *,
    token_id: int,
    key: str,
    fingerprint: str,
    status: int,
    body: str,
    now: datetime,
) -> None:
    """Store the answer in the caller's transaction. A concurrent request that stored the same
    key first makes this flush raise IntegrityError, which rolls the caller's change back."""
    await session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.token_id == token_id,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at <= now - KEY_LIFETIME,
        )
    )
    session.add(
        IdempotencyKey(
            token_id=token_id,
            key=key,
            fingerprint=fingerprint,
            status=status,
            body=body,
            created_at=now,
        )
    )
    await session.flush()


async def purge_expired_keys(session: AsyncSession, now: datetime) -> int:
    result = await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.created_at <= now - KEY_LIFETIME)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def run_expired_key_purge(
    db: Database, clock: Clock, interval: float = PURGE_INTERVAL_SECONDS
) -> None:
    """Forever: delete expired keys once an hour, so the table holds about a day of writes."""
    while True:
        try:
            async with db.write() as session:
                purged = await purge_expired_keys(session, clock())
            if purged:
                log.info("purged %d expired idempotency keys", purged)
        except Exception:
            log.exception("purging expired idempotency keys failed; trying again later")
        await asyncio.sleep(interval)
