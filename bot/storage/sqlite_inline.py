"""SQLite through aiosqlite's interface, with every call made on the event loop's own thread.

aiosqlite runs each call on a thread of its own and wakes the event loop with the result:
SQLAlchemy makes four such calls per statement (cursor, execute, fetch, close), and each costs
two thread wake-ups, far more than the statement itself (SQLite answers in microseconds from
its page cache). On a busy machine every wake-up waits for a CPU, and a webhook's few
statements took milliseconds. Made inline, they take microseconds.

The price: a call blocks the event loop while SQLite works. Tarmac's statements are short and
use indexes, and the writers of one server take turns before they begin (`Database.write()`), so
SQLite never waits inside the server for its own lock; it only waits (up to busy_timeout) while
another process, such as `tarmac token create`, holds the write lock for a moment.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import aiosqlite

# aiosqlite's default: rows fetched per step when a cursor is iterated.
ITER_CHUNK_SIZE = 64


class _InlineQueue:
    """Stands for the worker thread's queue: runs each call as it is queued. (SQLAlchemy's
    dialect queues one call itself, to set the isolation level.)"""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Callable[[], Any]]) -> None:
        future, function = item
        try:
            result = function()
        except Exception as exc:
            if future is not None:
                future.set_exception(exc)
        else:
            if future is not None:
                future.set_result(result)


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection without its worker thread."""

    def __init__(self, connector: Callable[[], sqlite3.Connection], iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        self._tx = _InlineQueue()  # type: ignore[assignment]

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        return self._connect().__await__()

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def connect(database: str, **kwargs: Any) -> InlineConnection:
    """What SQLAlchemy's aiosqlite dialect calls (`async_creator_fn`) to open a connection."""
    return InlineConnection(partial(sqlite3.connect, database, **kwargs), ITER_CHUNK_SIZE)
