"""PostgreSQL: other replicas' committed outbox items wake this process's worker at once.

Every write transaction that adds outbox items announces them with `pg_notify` on
`OUTBOX_CHANNEL` (bot/storage/db.py), which PostgreSQL delivers when it commits. Each process
listens on one connection of its own (asyncpg's `add_listener`, outside the pool) and wakes its
worker for every notification another process sent; its own are skipped, the commit having
woken the worker already.

A lost connection (PostgreSQL restarted, a failover, the backend terminated) is opened again
with backoff; once it is, the worker is woken too, for what was announced in between. A
connection that dies silently (a network gone quiet) is found by a `SELECT 1` whenever no
notification came for a while. The worker's idle poll stays as the safety net beneath.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from bot.core.waits import finished_within
from bot.storage.db import CONNECT_TIMEOUT_SECONDS, OUTBOX_CHANNEL, failure_reason

log = logging.getLogger(__name__)

RECONNECT_FIRST_SECONDS = 0.1
RECONNECT_MAX_SECONDS = 5.0
# Without a notification this long, the connection is checked with a `SELECT 1`.
CHECK_IDLE_SECONDS = 30.0


def asyncpg_dsn(database_url: str) -> str:
    """The SQLAlchemy URL as asyncpg's DSN (asyncpg reads libpq's sslmode itself)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def reconnect_delay(failures: int) -> float:
    """How long to wait before the next attempt after `failures` failed ones in a row."""
    if failures <= 0:
        return 0.0
    return min(RECONNECT_FIRST_SECONDS * 2.0 ** (failures - 1), RECONNECT_MAX_SECONDS)


class OutboxListener:
    """LISTENs on `OUTBOX_CHANNEL`; calls `wake` for another process's notification, and once
    each time it (re)connects. `run()` until cancelled."""

    def __init__(
        self,
        database_url: str,
        origin: str,
        wake: Callable[[], None],
        *,
        check_idle: float = CHECK_IDLE_SECONDS,
    ) -> None:
        self._dsn = asyncpg_dsn(database_url)
        self._origin = origin
        self._wake = wake
        self._check_idle = check_idle
        self._lost = asyncio.Event()
        self._heard = asyncio.Event()
        self.connected = asyncio.Event()
        self.connections = 0  # how many times it connected (for tests)
        self.notified = 0  # other processes' notifications heard
        self.server_pid: int | None = None  # the listening backend's (for tests)

    async def run(self) -> None:
        failures = 0
        while True:
            await asyncio.sleep(reconnect_delay(failures))
            try:
                connection = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_SECONDS)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                failures += 1
                if failures == 1:
                    log.warning("outbox listener: cannot connect (%s)", failure_reason(exc))
                continue
            try:
                failures = 0
                await self._listen(connection)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                log.warning("outbox listener: connection lost (%s)", failure_reason(exc))
                failures = 1
            finally:
                self.connected.clear()
                self.server_pid = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), CONNECT_TIMEOUT_SECONDS)

    async def _listen(self, connection: Any) -> None:
        """Until the connection is lost (raises, or returns when asyncpg reports it closed)."""
        self._lost.clear()
        connection.add_termination_listener(lambda _connection: self._lost.set())
        await connection.add_listener(OUTBOX_CHANNEL, self._on_notification)
        self.server_pid = connection.get_server_pid()
        self.connections += 1
        self.connected.set()
        if self.connections > 1:
            log.info("outbox listener: connected again")
        self._wake()  # what was announced while not listening
        while not connection.is_closed():
            self._heard.clear()
            await finished_within(self._check_idle, self._wait_lost_or_heard())
            if self._lost.is_set():
                raise ConnectionResetError("the listening connection closed")
            if not self._heard.is_set():
                await connection.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT_SECONDS)

    async def _wait_lost_or_heard(self) -> None:
        lost = asyncio.ensure_future(self._lost.wait())
        heard = asyncio.ensure_future(self._heard.wait())
        try:
            await asyncio.wait((lost, heard), return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            heard.cancel()

    def _on_notification(self, _connection: Any, _pid: int, _channel: str, origin: str) -> None:
        self._heard.set()
        if origin == self._origin:
            return
        self.notified += 1
        self._wake()
