"""Group commit of webhook deliveries: concurrent deliveries share one write transaction.

Each delivery costs a few statements, but a write transaction costs a BEGIN, a COMMIT (and on
SQLite the one writer's turn): under load most of the time went to waiting for the turn. So
the requests hand their verified deliveries to a writer task (on PostgreSQL, two side by side),
which takes whatever has queued up while the previous transaction ran and handles it as a
batch: one INSERT claims every delivery of the batch, the handlers run one delivery after
another (as they would one transaction after another), one UPDATE stores the outcomes, one
COMMIT. Each request answers after the commit that holds its delivery, as before.

A batch that fails is rolled back whole and its deliveries are handled again, each in a
transaction of its own: a delivery whose handler raises (or that meets a database error) fails
alone, and the others are stored as if they had come one by one. A batch holds one delivery per
`X-GitHub-Delivery`; a second copy waits for the next batch and then finds the first one's row.

Handlers name what a delivery concerns for the log (`WebhookContext.about`); they run in the
writer's task, so those fields are kept per delivery and handed back to the request's task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gidgethub import sansio

from bot.app.operations import Mirror
from bot.config.projects_file import ProjectsConfig
from bot.core.clock import Clock
from bot.core.log_context import add_log_context, current_log_context, log_context
from bot.github.inbound.context import WebhookContext, forget_nobody
from bot.github.inbound.router import dispatch
from bot.storage import deliveries
from bot.storage.db import Database
from bot.storage.projects import project_repositories

log = logging.getLogger(__name__)

# `bot.github.inbound.router.dispatch`: runs the handlers of an event.
Dispatch = Callable[..., Awaitable[Any]]

# Enough to amortise a transaction; small enough that one batch never holds the writer long.
MAX_BATCH = 64
# PostgreSQL runs transactions side by side: while one batch waits for the server, another is
# handled. SQLite has one writer at a time (`Database.write()`), so one writer task.
POSTGRESQL_WRITERS = 2


@dataclass(frozen=True)
class Handled:
    """What became of a delivery, once it is committed."""

    claimed: bool  # False: recorded before (a redelivery), nothing done
    context: WebhookContext
    previous_outcome: str | None = None  # a redelivery's recorded outcome
    log_fields: Mapping[str, str | int] = field(default_factory=dict)


@dataclass
class _Pending:
    event: sansio.Event
    action: str | None
    may_hold_nul: bool
    answer: asyncio.Future[Handled]

    @property
    def delivery_id(self) -> str:
        return self.event.delivery_id


class DeliveryIntake:
    """Takes verified deliveries; records and dispatches them in shared write transactions."""

    def __init__(
        self,
        db: Database,
        projects: ProjectsConfig,
        clock: Clock,
        *,
        mirror: Mirror,
        dispatch_event: Dispatch = dispatch,
        max_batch: int = MAX_BATCH,
        forget_access: Callable[[str], object] = forget_nobody,
    ) -> None:
        self._db = db
        self._forget_access = forget_access
        self._dispatch = dispatch_event
        self.transactions = 0  # batches written, retries alone included (for tests and figures)
        self._projects = projects
        self._clock = clock
        self._mirror = mirror
        self._max_batch = max_batch
        self._queue: deque[_Pending] = deque()
        self._queued = asyncio.Event()
        self._writer_count = 1 if db.is_sqlite else POSTGRESQL_WRITERS
        self._writers: list[asyncio.Task[None]] = []

    async def handle(
        self, event: sansio.Event, action: str | None, *, may_hold_nul: bool = True
    ) -> Handled:
        """Record and dispatch the delivery; returns once that is committed. Without
        `may_hold_nul` (the raw body shows none), the payload is not searched for a NUL.

        Raises what handling it raised (nothing of it is then stored).
        """
        if not self._writers:
            self._writers = [
                asyncio.create_task(self._run(), name=f"delivery-intake-{n}")
                for n in range(self._writer_count)
            ]
        answer: asyncio.Future[Handled] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(event, action, may_hold_nul, answer))
        self._queued.set()
        return await answer

    async def close(self) -> None:
        for writer in self._writers:
            writer.cancel()
        for writer in self._writers:
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        self._writers = []
        while self._queue:
            pending = self._queue.popleft()
            if not pending.answer.done():
                pending.answer.set_exception(ConnectionAbortedError("the server is stopping"))

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._queued.clear()
                await self._queued.wait()
                continue
            await self._write(self._next_batch())

    def _next_batch(self) -> list[_Pending]:
        """Up to max_batch queued deliveries, in order, no two with the same id."""
        batch: list[_Pending] = []
        ids: set[str] = set()
        later: list[_Pending] = []
        while self._queue and len(batch) < self._max_batch:
            pending = self._queue.popleft()
            if pending.delivery_id in ids:
                later.append(pending)
            else:
                ids.add(pending.delivery_id)
                batch.append(pending)
        self._queue.extendleft(reversed(later))
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            handled = await self._transaction(batch)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            log.warning(
                "a batch of %d deliveries failed (%s); handling each alone",
                len(batch),
                type(exc).__name__,
            )
            for pending in batch:
                await self._write([pending])
            return
        for pending, result in zip(batch, handled, strict=True):
            _settle(pending, result)

    async def _transaction(self, batch: list[_Pending]) -> list[Handled]:
        self.transactions += 1
        now = self._clock()
        fields: dict[str, Mapping[str, str | int]] = {}
        async with self._db.write() as session:
            claims = [deliveries.Claim(p.delivery_id, p.event.event, p.action) for p in batch]
            claimed = await deliveries.claim_deliveries(session, claims, now)
            # Read once for the batch, inside its transaction: as fresh as a query per delivery.
            repositories = await project_repositories(session)
            contexts = [
                WebhookContext(
                    session=session,
                    now=now,
                    projects=self._projects,
                    delivery_id=p.delivery_id,
                    repositories=repositories,
                    mirror=self._mirror,
                    payload_may_hold_nul=p.may_hold_nul,
                    forget_access=self._forget_access,
                )
                for p in batch
            ]
            outcomes: dict[str, str] = {}
            for pending, context in zip(batch, contexts, strict=True):
                if pending.delivery_id not in claimed:
                    continue
                with log_context(delivery_id=pending.delivery_id):
                    await self._dispatch(pending.event, context=context)
                    fields[pending.delivery_id] = current_log_context()
                outcomes[pending.delivery_id] = context.outcome()
            await deliveries.record_outcomes(session, outcomes)
            seen_before = [p.delivery_id for p in batch if p.delivery_id not in claimed]
            previous = await deliveries.recorded_outcomes(session, seen_before)
        return [
            Handled(
                claimed=p.delivery_id in claimed,
                context=context,
                previous_outcome=previous.get(p.delivery_id),
                log_fields=fields.get(p.delivery_id, {}),
            )
            for p, context in zip(batch, contexts, strict=True)
        ]


def _settle(pending: _Pending, result: Handled | Exception) -> None:
    if pending.answer.done():  # the request went away meanwhile
        return
    if isinstance(result, Exception):
        pending.answer.set_exception(result)
    else:
        pending.answer.set_result(result)


def restore_log_context(fields: Mapping[str, str | int]) -> None:
    """Give the request's task the log fields its delivery's handlers named."""
    project = fields.get("project")
    environment = fields.get("environment")
    deployment_id = fields.get("deployment_id")
    add_log_context(
        project=project if isinstance(project, str) else None,
        environment=environment if isinstance(environment, str) else None,
        deployment_id=deployment_id if isinstance(deployment_id, int) else None,
        release_candidate=fields.get("release_candidate"),
    )
