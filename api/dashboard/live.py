"""Live updates: one poll of the change mark per process, pushed to every open page.

How a change is noticed: while at least one page listens, the process reads
`bot.storage.dashboard.change_mark` once a second (a few index seeks), whatever wrote the
change — this process, another replica, a webhook, a sweeper. When the mark differs from the
last one, every listener gets an SSE `change` event whose id is the new mark; the page then
fetches itself again and swaps its live region.

Nothing is lost on reconnect: a page sends the mark it was rendered at (`?since=`), and
EventSource sends the last event's id (`Last-Event-ID`) when it reconnects; a stream that opens
on a mark other than the current one starts with a `change` event.

A stream lasts as long as its session: it asks whether the session still stands before each
event and every `SESSION_CHECK_SECONDS` while nothing changes (one read by primary key), and
once it does not (signed out in another tab, expired, its token revoked) it sends
`signed-out` and ends. The page then closes it (no reconnect), keeps what it shows and says
so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot.core.clock import Clock
from bot.storage.dashboard import change_mark
from bot.storage.db import Database

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
# A comment line now and then, so proxies keep the stream open and a gone client is noticed.
KEEPALIVE_SECONDS = 15.0
# How long an open page may show updates after its session ended, at most.
SESSION_CHECK_SECONDS = 3.0
RETRY_MILLISECONDS = 1000
SIGNED_OUT = b"event: signed-out\ndata: Signed out: sign in again\n\n"


class ChangeFeed:
    """The newest mark, and a condition every listener waits on."""

    def __init__(self, read_mark: Callable[[], Awaitable[str]], poll: float = POLL_SECONDS):
        self._read_mark = read_mark
        self._poll = poll
        self._changed = asyncio.Condition()
        self._listeners = 0
        self._wanted = asyncio.Event()
        self.mark: str | None = None
        self.closed = False

    async def close(self) -> None:
        """Shutting down: every stream ends now, rather than hold the shutdown."""
        self.closed = True
        async with self._changed:
            self._changed.notify_all()

    async def fresh(self) -> str:
        """The mark read now (a page reads it before its data, so it is never newer)."""
        return await self._read_mark()

    async def current(self) -> str:
        if self.mark is None:
            self.mark = await self._read_mark()
        return self.mark

    async def run(self) -> None:
        """Forever: poll while anyone listens, tell them when the mark moves."""
        while True:
            await self._wanted.wait()
            try:
                mark: str | None = await self._read_mark()
            except (OSError, SQLAlchemyError):
                log.warning("the dashboard's change mark could not be read; trying again")
                mark = self.mark
            if mark != self.mark:
                self.mark = mark
                async with self._changed:
                    self._changed.notify_all()
            await asyncio.sleep(self._poll)

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        if self._listeners == 0:
            self.mark = None  # not polled while nobody listened
        self._listeners += 1
        self._wanted.set()
        try:
            yield
        finally:
            self._listeners -= 1
            if self._listeners == 0:
                self._wanted.clear()

    async def wait_for_change(self, seen: str, within: float) -> str | None:
        """The new mark once it differs from `seen`; None after `within` seconds."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await self._changed.wait_for(
                        lambda: self.closed or (self.mark is not None and self.mark != seen)
                    )
        return self.mark if self.mark is not None and self.mark != seen else None


def mark_reader(db: Database, clock: Clock) -> Callable[[], Awaitable[str]]:
    async def read() -> str:
        async with db.read() as session:
            return (await change_mark(session, clock())).token

    return read


def _event_stream(headers: dict[str, str]) -> web.StreamResponse:
    return web.StreamResponse(
        headers={
            **headers,
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )


async def stream(
    request: web.Request,
    feed: ChangeFeed,
    headers: dict[str, str],
    session_stands: Callable[[], Awaitable[bool]],
) -> web.StreamResponse:
    """Serve one page's event stream until the client goes away, its session ends or the
    server stops."""
    response = _event_stream(headers)
    await response.prepare(request)
    seen = request.headers.get("Last-Event-ID") or request.query.get("since", "")
    with contextlib.suppress(ConnectionResetError):
        async with feed.listening():
            await response.write(f"retry: {RETRY_MILLISECONDS}\n\n".encode())
            await _follow(response, feed, seen, _checked(session_stands))
    return response


async def signed_out_stream(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    """The stream of a page whose session ended before it connected: `signed-out`, and the
    end (an EventSource given a redirect to the sign-in page instead would only fail)."""
    response = _event_stream(headers)
    await response.prepare(request)
    with contextlib.suppress(ConnectionResetError):
        await response.write(SIGNED_OUT)
    return response


def _checked(session_stands: Callable[[], Awaitable[bool]]) -> Callable[[], Awaitable[bool]]:
    """The session check, taken as standing while the database does not answer (a blip
    signs nobody out; the next check asks again)."""

    async def stands() -> bool:
        try:
            return await session_stands()
        except (OSError, SQLAlchemyError):
            log.warning("a dashboard stream could not check its session; trying again")
            return True

    return stands


async def _follow(
    response: web.StreamResponse,
    feed: ChangeFeed,
    seen: str,
    session_stands: Callable[[], Awaitable[bool]],
) -> None:
    loop = asyncio.get_running_loop()
    current = await feed.current()
    quiet_since = loop.time()
    while not feed.closed:
        if current != seen:
            if not await session_stands():
                await response.write(SIGNED_OUT)
                return
            await response.write(_event(current))
            seen = current
            quiet_since = loop.time()
        changed = await feed.wait_for_change(seen, SESSION_CHECK_SECONDS)
        if feed.closed:
            return
        if changed is not None:
            current = changed
            continue
        if not await session_stands():
            await response.write(SIGNED_OUT)
            return
        if loop.time() - quiet_since >= KEEPALIVE_SECONDS:
            await response.write(b": keep-alive\n\n")
            quiet_since = loop.time()


def _event(mark: str) -> bytes:
    return f"event: change\nid: {mark}\ndata: {mark}\n\n".encode()
