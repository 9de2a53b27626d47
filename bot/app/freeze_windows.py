"""Calendar windows told as they open and close (`freeze_window.opened`, `.closed`).

Nothing is written when a window opens, so a sweeper looks: every `calendar_sweep_seconds`,
for each environment, the edges of its windows since its watermark
(`environments.calendar_checked_at`) up to now (bot/domain/calendar.py `edges_to_tell`). The
notifications and the watermark's move are one transaction, under the environment's lock,
which reads the watermark again: each edge is told exactly once, across restarts and however
many replicas sweep the same database, and at most a sweep interval after it happened.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import notifications
from bot.core.clock import Clock
from bot.domain.calendar import Window, edges_to_tell
from bot.domain.policy import EnvironmentPolicy
from bot.storage.db import Database
from bot.storage.environments import calendar_watches, locked_environment
from bot.storage.models import Environment

log = logging.getLogger(__name__)


def _windows(policy: dict[str, Any] | None, removed_at: datetime | None) -> tuple[Window, ...]:
    """A removed environment's windows no longer count: its watermark is cleared."""
    if removed_at is not None:
        return ()
    return EnvironmentPolicy.from_stored(policy).windows


async def sweep_freeze_windows(db: Database, clock: Clock) -> int:
    """One pass over the environments; returns how many openings and closings it told."""
    now = clock()
    async with db.read() as session:
        watches = await calendar_watches(session)
    due = [
        w.id
        for w in watches
        if edges_to_tell(_windows(w.policy, w.removed_at), w.calendar_checked_at, now)
    ]
    told = 0
    for environment_id in due:
        async with db.write() as session:
            environment = await locked_environment(session, environment_id)
            if environment is None:
                continue
            told += await _tell_edges(session, environment, clock)
    return told


async def _tell_edges(session: AsyncSession, environment: Environment, clock: Clock) -> int:
    # The clock is read once the environment is locked, and the watermark read again: another
    # replica may have told these edges since the round began.
    now = clock()
    windows = _windows(environment.policy, environment.removed_at)
    look = edges_to_tell(windows, environment.calendar_checked_at, now)
    if look is None:
        return 0
    for edge in look.edges:
        await notifications.freeze_window_passed(session, environment, edge, now)
    environment.calendar_checked_at = look.checked_at
    return len(look.edges)


async def run_freeze_window_sweeper(db: Database, clock: Clock, interval: float) -> None:
    """`sweep_freeze_windows` every `interval` seconds (the setting calendar_sweep_seconds)."""
    while True:
        try:
            await sweep_freeze_windows(db, clock)
        except Exception:
            log.exception("the freeze window sweep failed; retrying in %.0f s", interval)
        await asyncio.sleep(interval)
