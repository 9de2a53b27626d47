"""Group commit of verified webhook deliveries into the inbox: a 2xx means the delivery is stored.

The endpoint hands each verified delivery here. A writer task appends whatever has queued up
while the previous append ran (bot/storage/inbox.py: one INSERT, one COMMIT; a transaction's
BEGIN, COMMIT and, on SQLite, the one writer's turn were most of what a delivery cost), then
wakes the inbox's reader (bot/github/inbound/inbox.py), which handles the deliveries in their
own transactions. One writer, so appends commit in the order the deliveries came and the
inbox's ids follow arrival.

A delivery no handler would act on (bot/github/inbound/triage.py, asked in the same
transaction) is not stored in the inbox: its delivery row is written there and then, with the
outcome, and it is answered with that outcome at once; an append of only such deliveries does
not wake the reader (its round would take the writer's turn for nothing: about a tenth of a `noop`
delivery's CPU).

Each request returns once its delivery is committed and, within `answer_wait` seconds, with
what handling it did, so GitHub's list of recent deliveries shows the outcome; past the wait
(a backlog), or with no wait, it returns None: stored, to be handled ("queued"). Waiting costs
the server nothing but the open request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

from gidgethub import sansio

from bot.config.projects_file import ProjectsConfig
from bot.core.clock import Clock
from bot.github.inbound.inbox import Handled, InboxReader, action_of
from bot.github.inbound.triage import outcome_without_handling
from bot.storage import deliveries, inbox
from bot.storage.db import Database
from bot.storage.projects import project_repositories

# Enough to amortise a transaction; small enough that one batch never holds the writer long.
MAX_BATCH = 128


@dataclass
class _Pending:
    event: sansio.Event
    arrival: inbox.Arrival
    # Set once committed: with what became of it when that is known already (triage), else None.
    committed: asyncio.Future[Handled | None]


class DeliveryIntake:
    """Takes verified deliveries; appends them to the inbox in shared write transactions."""

    def __init__(
        self,
        db: Database,
        reader: InboxReader,
        projects: ProjectsConfig,
        clock: Clock,
        *,
        answer_wait: float,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._db = db
        self._reader = reader
        self._projects = projects
        self._clock = clock
        self._answer_wait = answer_wait
        self._max_batch = max_batch
        self.transactions = 0  # appends committed or tried (for tests and figures)
        self._queue: deque[_Pending] = deque()
        self._queued = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def handle(self, event: sansio.Event, body: bytes) -> Handled | None:
        """Store the delivery (`body`: its JSON); once committed, return what handling it did
        within the answer wait, or None (stored, not handled yet).

        Raises a database error when the delivery could not be stored, and what handling it
        raised when it failed within the wait (nothing of it is then stored)."""
        if self._writer is None:
            self._writer = asyncio.create_task(self._run(), name="delivery-intake")
        loop = asyncio.get_running_loop()
        self._reader.keep_decoded(event)
        answer = self._reader.expect(event) if self._answer_wait > 0 else None
        committed: asyncio.Future[Handled | None] = loop.create_future()
        arrival = inbox.Arrival(event.delivery_id, event.event, body)
        self._queue.append(_Pending(event, arrival, committed))
        self._queued.set()
        try:
            handled = await committed
            if handled is not None or answer is None:
                return handled
            return await self._answer_within_wait(answer)
        finally:
            if answer is not None and not answer.done():
                self._reader.forget(event.delivery_id, answer)
                answer.cancel()

    async def _answer_within_wait(self, answer: asyncio.Future[Handled]) -> Handled | None:
        try:
            async with asyncio.timeout(self._answer_wait):
                return await asyncio.shield(answer)
        except TimeoutError:
            return None

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
        while self._queue:
            pending = self._queue.popleft()
            if not pending.committed.done():
                pending.committed.set_exception(ConnectionAbortedError("the server is stopping"))

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._queued.clear()
                await self._queued.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]
            await self._append(batch)

    async def _append(self, batch: list[_Pending]) -> None:
        self.transactions += 1
        now = self._clock()
        try:
            async with self._db.write() as session:
                repositories = await project_repositories(session)
                outcomes = [
                    outcome_without_handling(p.event, p.arrival.body, repositories, self._projects)
                    for p in batch
                ]
                stored = [p for p, outcome in zip(batch, outcomes, strict=True) if outcome is None]
                if stored:
                    await inbox.append(session, [p.arrival for p in stored], now)
                # The first of each id (two copies that came together hold the same payload).
                settled = {
                    p.event.delivery_id: (p, outcome)
                    for p, outcome in reversed(list(zip(batch, outcomes, strict=True)))
                    if outcome is not None
                }
                claims = [
                    deliveries.Claim(d, p.event.event, action_of(p.event), now, outcome)
                    for d, (p, outcome) in settled.items()
                ]
                claimed = await deliveries.claim_deliveries(session, claims) if claims else set()
                seen_before = [d for d in settled if d not in claimed]
                previous = await deliveries.recorded_outcomes(session, seen_before)
        except Exception as exc:
            self._reader.abandon([p.arrival.delivery_id for p in batch])
            for pending in batch:
                if not pending.committed.done():
                    pending.committed.set_exception(exc)
            return
        self._reader.appended([p.arrival.delivery_id for p in stored])
        for pending, outcome in zip(batch, outcomes, strict=True):
            if outcome is None:
                answer = None
            else:
                delivery_id = pending.event.delivery_id
                first = settled[delivery_id][0] is pending
                answer = (
                    Handled(True, outcome, ignored=True)
                    if first and delivery_id in claimed
                    else Handled(False, previous.get(delivery_id, outcome))
                )
                self._reader.settled_at_intake(pending.event, answer)
            if not pending.committed.done():
                pending.committed.set_result(answer)
