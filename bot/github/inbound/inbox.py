"""Handling webhook deliveries from the inbox: each once, in arrival order, after any crash.

The reader takes the oldest deliveries of the inbox (bot/storage/inbox.py), up to `max_batch`,
and handles them in ONE write transaction: one INSERT records them by `X-GitHub-Delivery`
(bot/storage/deliveries.py; a redelivery finds its row and is a duplicate), the event handlers
run one delivery after another (as they would one transaction after another), one UPDATE
stores the outcomes, one DELETE takes the batch out of the inbox, one COMMIT. What the handlers
changed commits with that, so a delivery takes effect once: a process killed midway leaves its
rows, and the next reader (this one restarted, or another replica's) handles them.

A batch that fails is rolled back whole and handled again one delivery at a time. A delivery
whose handler raises `ATTEMPTS` times alone is dropped from the inbox with nothing of it stored
(and logged): what used to be answered 500, so a request still waiting for it is answered 500
and GitHub shows the delivery failed, to be redelivered. A database that fails is waited out:
the rows stay, and are tried again in the same order.

Woken when an append commits (bot/github/inbound/intake.py), and every `poll_seconds` as a safety
net for rows another process left. A request that waits for its delivery's outcome gets it
from here (`expect`); one handled by another replica's reader is answered from its stored row.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from gidgethub import sansio
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import Mirror
from bot.config.projects_file import ProjectsConfig
from bot.core.clock import Clock
from bot.core.log_context import current_log_context, log_context, restored_log_context
from bot.core.metrics import Metrics, event_label
from bot.core.waits import finished_within
from bot.github.inbound.context import WebhookContext, forget_nobody
from bot.github.inbound.router import (
    HANDLED_EVENTS,
    dispatch,
    only_project_of_repository,
    read_ahead,
)
from bot.storage import deliveries, inbox
from bot.storage.batch_reads import BatchReads
from bot.storage.db import Database
from bot.storage.projects import ProjectRepositories, project_repositories

log = logging.getLogger(__name__)

# `bot.github.inbound.router.dispatch`: runs the handlers of an event.
Dispatch = Callable[..., Awaitable[Any]]
# `bot.github.inbound.router.read_ahead`: reads at once what a batch's handlers look up.
ReadAhead = Callable[
    [AsyncSession, Sequence[sansio.Event], ProjectRepositories, BatchReads], Awaitable[None]
]

# Enough to amortise a transaction; small enough that one batch never holds the writer long.
MAX_BATCH = 64
# A delivery whose handler raises this many times alone is dropped (a bug, not a fault).
ATTEMPTS = 3
POLL_SECONDS = 1.0
# After a database failure, the next try waits this long (doubling to the most).
RETRY_SECONDS = 0.2
MAX_RETRY_SECONDS = 5.0
# Decoded events kept from the intake, so a delivery this process took is not decoded twice:
# a few batches' worth. A decoded payload takes about ten times its JSON, so not a backlog's.
DECODED_KEPT = 256


@dataclass(frozen=True)
class Handled:
    """What became of a delivery, once that is committed."""

    claimed: bool  # False: handled before (a redelivery, or a second copy), nothing done
    outcome: str | None  # what handling it did; a duplicate's: what the first one did
    ignored: bool = False


class InboxReader:
    """Drains the inbox; answers the requests that wait for their delivery's outcome."""

    def __init__(
        self,
        db: Database,
        projects: ProjectsConfig,
        clock: Clock,
        *,
        mirror: Mirror,
        metrics: Metrics | None = None,
        dispatch_event: Dispatch = dispatch,
        read_ahead: ReadAhead = read_ahead,
        max_batch: int = MAX_BATCH,
        poll_seconds: float = POLL_SECONDS,
        forget_access: Callable[[str], object] = forget_nobody,
    ) -> None:
        self._db = db
        self._projects = projects
        self._clock = clock
        self._mirror = mirror
        self._metrics = metrics
        self._dispatch = dispatch_event
        self._read_ahead = read_ahead
        self._max_batch = max_batch
        self._poll_seconds = poll_seconds
        self._forget_access = forget_access
        self.transactions = 0  # batches written, retries alone included (for tests and figures)
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiters: dict[str, list[asyncio.Future[Handled]]] = {}
        # Deliveries whose append has committed and that someone still waits for.
        self._appended: set[str] = set()
        # A plain dict (an LRU cache's bookkeeping cost 2 % of a delivery's CPU); entries go
        # when their delivery is handled.
        self._decoded: dict[str, sansio.Event] = {}

    # --- what the intake tells -------------------------------------------------------------

    def expect(self, event: sansio.Event) -> asyncio.Future[Handled]:
        """A future of what becomes of this delivery (set once its handling has committed)."""
        answer: asyncio.Future[Handled] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(event.delivery_id, []).append(answer)
        return answer

    def keep_decoded(self, event: sansio.Event) -> None:
        """The intake decoded it: the reader need not decode its row again."""
        if len(self._decoded) >= DECODED_KEPT:
            # A backlog, or deliveries another replica's reader handled: start afresh (what
            # is dropped is decoded again from its row).
            self._decoded.clear()
        self._decoded.setdefault(event.delivery_id, event)

    def forget(self, delivery_id: str, answer: asyncio.Future[Handled]) -> None:
        """The request stopped waiting."""
        waiting = self._waiters.get(delivery_id)
        if waiting and answer in waiting:
            waiting.remove(answer)
            if not waiting:
                del self._waiters[delivery_id]
                self._appended.discard(delivery_id)

    def appended(self, delivery_ids: Sequence[str]) -> None:
        """These deliveries' append has committed: handle them."""
        if delivery_ids:  # an append of only deliveries settled at intake gives no work
            self._appended.update(d for d in delivery_ids if d in self._waiters)
            self.wake()

    def abandon(self, delivery_ids: Sequence[str]) -> None:
        """Their append failed: nobody waits for them here."""
        for delivery_id in delivery_ids:
            for answer in self._done_with(delivery_id):
                answer.cancel()

    def settled_at_intake(self, event: sansio.Event, handled: Handled) -> None:
        """The intake recorded the delivery with its outcome (no handler acts on it): said and
        answered as if handled here."""
        project = only_project_of_repository(event.data, self._projects)
        fields = {"delivery_id": event.delivery_id} | ({"project": project} if project else {})
        self._settle(event, handled, fields)

    def wake(self) -> None:
        self._woken.set()

    @property
    def round_due(self) -> bool:
        """Woken since its last round began: it takes the writer's turn again at once."""
        return self._woken.is_set()

    # --- running -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="inbox-reader")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for waiting in self._waiters.values():
            for answer in waiting:
                if not answer.done():
                    answer.set_exception(ConnectionAbortedError("the server is stopping"))
        self._waiters.clear()
        self._appended.clear()

    async def _run(self) -> None:
        pause = RETRY_SECONDS
        woken = False  # the first round looks at what a stopped process left
        while True:
            # Cleared before the round, not after: an append committed during it wakes the
            # next round at once instead of waiting out the poll.
            self._woken.clear()
            try:
                more = await self.drain_once(look_first=not woken)
            except (DBAPIError, OSError) as exc:
                log.warning("inbox: database error (%s); trying again", type(exc).__name__)
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_RETRY_SECONDS)
                continue
            pause = RETRY_SECONDS
            if more:
                woken = True
                continue
            woken = await finished_within(self._poll_seconds, self._woken.wait())

    async def drain_once(self, *, look_first: bool = True) -> bool:
        """Handle the oldest batch of the inbox; True when there may be more. `look_first`
        (a poll, not a wake): read whether there is anything before taking the writer's turn.

        Raises a database error (nothing of the batch is then stored)."""
        if look_first:
            async with self._db.read() as session:
                empty = await inbox.is_empty(session)
            if empty:
                await self._answer_handled_elsewhere()
                return False
        try:
            count = await self._transaction(only=None)
        except (DBAPIError, OSError):
            raise
        except Exception as exc:  # a handler's: each delivery alone, to find which
            await self._one_at_a_time(exc)
            return True
        if count == 0:
            await self._answer_handled_elsewhere()
        return count >= self._max_batch

    # --- handling ----------------------------------------------------------------------------

    async def _one_at_a_time(self, failure: Exception) -> None:
        """The batch failed: its deliveries again, each in a transaction of its own."""
        async with self._db.read() as session:
            rows = await inbox.oldest(session, self._max_batch)
        if len(rows) > 1:
            log.warning(
                "inbox: a batch of %d deliveries failed (%s); handling each alone",
                len(rows),
                type(failure).__name__,
            )
        for row in rows:
            await self._alone(row.id)

    async def _alone(self, item_id: int) -> None:
        failure = None
        for _ in range(ATTEMPTS):
            try:
                await self._transaction(only=item_id)
                return
            except (DBAPIError, OSError):
                raise
            except Exception as exc:
                failure = exc
        assert failure is not None
        await self._drop(item_id, failure)

    async def _drop(self, item_id: int, failure: Exception) -> None:
        async with self._db.write() as session:
            row = await inbox.stored(session, item_id)
            if row is None:
                return
            await inbox.remove(session, [item_id])
        with log_context(delivery_id=row.delivery_id):
            log.error(
                "delivery %s (%s): handling failed %d times; dropped, nothing recorded",
                row.delivery_id,
                row.event,
                ATTEMPTS,
                exc_info=failure,
            )
        for answer in self._done_with(row.delivery_id):
            answer.set_exception(failure)

    async def _transaction(self, *, only: int | None) -> int:
        """Handle the oldest batch (or the one row `only`) in one transaction; its size."""
        self.transactions += 1
        now = self._clock()
        fields: dict[str, Mapping[str, str | int]] = {}
        async with self._db.write() as session:
            await inbox.take_turn(session)
            if only is None:
                rows = await inbox.oldest(session, self._max_batch)
            else:
                row = await inbox.stored(session, only)
                rows = [row] if row is not None else []
            if not rows:
                return 0
            events = [self._event(row) for row in rows]
            claims = [
                deliveries.Claim(e.delivery_id, e.event, action_of(e), row.received_at)
                for row, e in zip(rows, events, strict=True)
            ]
            claimed = await deliveries.claim_deliveries(session, claims)
            # Read once for the batch, inside its transaction: as fresh as a query per delivery.
            repositories = await project_repositories(session)
            reads = BatchReads()
            await self._read_ahead(
                session, [e for e in events if e.delivery_id in claimed], repositories, reads
            )
            outcomes: dict[str, str] = {}
            ignored: set[str] = set()
            for row, event in zip(rows, events, strict=True):
                if event.delivery_id not in claimed:
                    continue
                context = WebhookContext(
                    session=session,
                    now=now,
                    projects=self._projects,
                    delivery_id=event.delivery_id,
                    repositories=repositories,
                    mirror=self._mirror,
                    payload_may_hold_nul=b"\\u0000" in row.body,
                    forget_access=self._forget_access,
                    reads=reads,
                )
                with log_context(delivery_id=event.delivery_id):
                    await self._dispatch(event, context=context)
                    fields[event.delivery_id] = current_log_context()
                outcomes[event.delivery_id] = context.outcome()
                if context.ignored:
                    ignored.add(event.delivery_id)
            # What the handlers left to write (the batch's new RCs): one INSERT per table.
            await session.flush()
            await deliveries.record_outcomes(session, outcomes)
            seen_before = [e.delivery_id for e in events if e.delivery_id not in claimed]
            previous = await deliveries.recorded_outcomes(session, seen_before)
            await inbox.remove(session, [row.id for row in rows])
        waited = self._clock()
        for row, event in zip(rows, events, strict=True):
            self._waited(waited - row.received_at)
            handled = (
                Handled(True, outcomes[event.delivery_id], event.delivery_id in ignored)
                if event.delivery_id in claimed
                else Handled(False, previous.get(event.delivery_id))
            )
            self._settle(event, handled, fields.get(event.delivery_id, {}))
        return len(rows)

    def _event(self, row: inbox.Stored) -> sansio.Event:
        kept = self._decoded.get(row.delivery_id)
        if kept is not None and kept.event == row.event:
            return kept
        try:
            data = orjson.loads(row.body)
        except orjson.JSONDecodeError:  # what orjson refuses (NaN, huge integers) json reads
            data = json.loads(row.body)
        return sansio.Event(data, event=row.event, delivery_id=row.delivery_id)

    def _settle(
        self, event: sansio.Event, handled: Handled, fields: Mapping[str, str | int]
    ) -> None:
        delivery_id = event.delivery_id
        name = event.event + (f".{action}" if (action := action_of(event)) else "")
        with restored_log_context(fields or {"delivery_id": delivery_id}):
            if handled.claimed:
                log.info("delivery %s (%s): %s", delivery_id, name, handled.outcome)
            else:
                log.info("delivery %s (%s): seen before, nothing done", delivery_id, name)
        self._count(event.event, _status(handled))
        for n, answer in enumerate(self._done_with(delivery_id)):
            # A second copy that waited beside the first is that one's duplicate.
            answer.set_result(handled if n == 0 else Handled(False, handled.outcome))

    async def _answer_handled_elsewhere(self) -> None:
        """Answer the waits for deliveries no longer in the inbox that this reader did not
        handle (another replica's reader took them): from their stored rows."""
        if not self._appended:
            return
        gone_for = list(self._appended)
        async with self._db.read() as session:
            still = await inbox.waiting(session, gone_for)
            gone = [d for d in gone_for if d not in still]
            outcomes = await deliveries.recorded_outcomes(session, gone)
        for delivery_id in gone:
            handled_here = outcomes.get(delivery_id)
            for answer in self._done_with(delivery_id):
                if handled_here is None:  # dropped there: its handler failed
                    answer.set_exception(RuntimeError("handling failed in another replica"))
                else:
                    answer.set_result(Handled(True, handled_here))

    def _done_with(self, delivery_id: str) -> list[asyncio.Future[Handled]]:
        """Forget the delivery; the answers still waiting for it, in the order they came."""
        self._decoded.pop(delivery_id, None)
        self._appended.discard(delivery_id)
        return [a for a in self._waiters.pop(delivery_id, []) if not a.done()]

    def _waited(self, waited: timedelta) -> None:
        if self._metrics is not None:
            self._metrics.webhook_inbox_seconds.observe(max(0.0, waited.total_seconds()))

    def _count(self, event: str, status: str) -> None:
        if self._metrics is not None:
            self._metrics.webhook_delivery(event_label(event, HANDLED_EVENTS), status)


def action_of(event: sansio.Event) -> str | None:
    action = event.data.get("action") if isinstance(event.data, dict) else None
    # A NUL cannot be stored (PostgreSQL); dispatch ignores such a payload.
    return action if isinstance(action, str) and "\x00" not in action else None


def _status(handled: Handled) -> str:
    if not handled.claimed:
        return "duplicate"
    return "ignored" if handled.ignored else "accepted"
