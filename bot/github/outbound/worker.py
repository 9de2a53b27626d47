"""The outbox worker: delivers pending GitHub calls, in order per ordering key.

Each round claims the due items (one per ordering key, oldest first) in a short transaction
that counts the attempt, delivers them in parallel, and records the outcomes together with
what each call implies: the round's carried-out items in one transaction (a savepoint each),
a retry or a refusal on its own. A crash between the call and the record leaves the item
claimed with no outcome: the next attempt knows it is uncertain.

Items of actions that call no GitHub (notifications, `local_handlers`) need no installation and
are not part of a round's wait: each runs in a task of its own and records its own outcome, so
a receiver that hangs until its timeout holds up neither the GitHub calls nor other receivers
(its later items wait behind it: one ordering key per receiver). Without a GitHub App the
worker claims those items alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from cachetools import TTLCache
from sqlalchemy.exc import SQLAlchemyError

from bot.app.operations import Mirror
from bot.core.clock import Clock
from bot.core.log_context import add_log_context
from bot.core.waits import finished_within
from bot.github import endpoints
from bot.github.access import TeamMemberships
from bot.github.client import GitHubClient, GitHubRefused, GitHubUnavailable
from bot.github.outbound.effects import (
    ON_REFUSAL,
    PACED,
    PRELOADERS,
    CheckAgain,
    EffectContext,
    Handler,
    Recorder,
)
from bot.github.outbound.pacing import ContentPacer
from bot.storage.db import Database
from bot.storage.installations import installation_for_repo, remember_repository
from bot.storage.models import Deployment
from bot.storage.outbox import (
    DEFAULT_LEASE,
    MAX_BACKOFF,
    OUTAGE_MAX_BACKOFF,
    RECEIVER_MAX_BACKOFF,
    Action,
    ClaimedItem,
    LocalHandler,
    RefusedForGood,
    RetryLater,
    claim_due,
    known_action,
    mark_all_delivered,
    mark_check_again,
    mark_delivered,
    mark_failed,
    mark_not_yet,
    mark_retry,
)

log = logging.getLogger(__name__)

# Items a round claims and calls GitHub for at once: GitHub allows no more than 100 concurrent
# requests (secondary rate limits, "Rate limits for the REST API").
BATCH_SIZE = 100
IDLE_POLL_SECONDS = 0.5
NOT_INSTALLED = "the GitHub App is not installed on this repository"
NO_GITHUB_APP = "no GitHub App is configured"
# A lost dispatch whose run cannot be looked for (bot/github/outbound/workflows.py) waits this
# many leases (a minute by default) for its run's workflow_run event before it is sent again.
LOST_DISPATCH_GRACE_LEASES = 4
INSTALLATION_CACHE_SECONDS = 60.0
UNKNOWN_ACTION = "no handler for outbox action {action!r} in this version of Tarmac; not retried"


@dataclass(frozen=True)
class _Delivered:
    item: ClaimedItem
    record: Recorder | None


@dataclass
class WorkerStats:
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    put_back: int = 0  # paced items whose turn had not come (not attempts)


class OutboxWorker:
    def __init__(
        self,
        db: Database,
        client: GitHubClient | None,
        clock: Clock,
        handlers: dict[Action, Handler],
        *,
        mirror: Mirror,
        local_handlers: Mapping[Action, LocalHandler] | None = None,
        batch_size: int = BATCH_SIZE,
        idle_poll: float = IDLE_POLL_SECONDS,
        lease: timedelta = DEFAULT_LEASE,
        pacer: ContentPacer | None = None,
    ) -> None:
        self._db = db
        # None without a GitHub App: then only `local_handlers`' actions are claimed.
        self._client = client
        self._clock = clock
        self._handlers = handlers
        self._local_handlers = dict(local_handlers or {})
        self._claimed_actions = (
            None if client is not None else {str(action) for action in self._local_handlers}
        )
        self._local_tasks: set[asyncio.Task[None]] = set()
        self._local_finished = 0  # notifications ended so far (see `drain`)
        self._mirror = mirror
        self._batch_size = batch_size
        self._idle_poll = idle_poll
        self._lease = lease
        self._pacer = pacer if pacer is not None else ContentPacer()
        # Give up on a delivery while its lease still holds, so no other worker takes the
        # item while this one may still be talking to GitHub about it.
        self._delivery_timeout = lease.total_seconds() * 0.8
        self._wake = asyncio.Event()
        self._stopping = False
        self.stats = WorkerStats()
        # Repository -> installation, for a short while: a round of 50 items of one repository
        # asks the database (or GitHub) once, not 50 times. Short, because an installation
        # event may move the repository.
        self._installations: TTLCache[str, int] = TTLCache(
            maxsize=1000, ttl=INSTALLATION_CACHE_SECONDS
        )
        self._installation_lookup = asyncio.Lock()
        self._warned: set[str] = set()
        # Team memberships read for approvals (`/approve`), kept a minute across items.
        self.memberships = TeamMemberships(client) if client is not None else None

    def wake(self) -> None:
        """Something was enqueued: look now instead of at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the round in progress, then return from `run`."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            # Cleared before the round, not after: a wake-up during it (a notification that
            # finished, whose receiver's next item is now due) starts the next round at once.
            self._wake.clear()
            try:
                delivered = await self.deliver_due()
            except (OSError, SQLAlchemyError) as exc:
                # The database is away: one line per round, not a traceback; it comes back.
                log.error("outbox round failed, database unreachable: %s", type(exc).__name__)
                delivered = 0
            except Exception:
                log.exception("outbox round failed; retrying")
                delivered = 0
            if delivered or self._stopping:
                continue
            await finished_within(self._idle_poll, self._wake.wait())
        # The notifications under way finish (each within its delivery timeout) or, should
        # the service stop waiting first, are taken again once their lease ends.
        await self._local_done()

    async def deliver_due(self) -> int:
        """One round: claim what is due and deliver it; returns how many items were handled
        (notifications are started, not awaited)."""
        async with self._db.write() as session:
            items = await claim_due(
                session,
                self._clock(),
                self._batch_size,
                self._lease,
                actions=self._claimed_actions,
            )
        if not items:
            return 0
        github_items = [item for item in items if not self._start_local(item)]
        github_items, paced = await self._take_turns(github_items)
        preloaded = await self._preload(github_items)
        outcomes = await asyncio.gather(
            *(
                self._deliver(item, preloaded.get(item.id))
                for item in github_items
                if item is not paced
            ),
            *([self._deliver_paced(paced, preloaded.get(paced.id))] if paced else []),
        )
        await self._record_delivered([o for o in outcomes if o is not None])
        return len(items)

    async def _take_turns(
        self, items: list[ClaimedItem]
    ) -> tuple[list[ClaimedItem], ClaimedItem | None]:
        """The round's items to deliver now, and the one content-creating item among them
        that has this process's turn (bot/github/outbound/pacing.py); the other
        content-creating items are put back, each due when its turn may come."""
        paced = [item for item in items if known_action(item.action) in PACED]
        if not paced:
            return items, None
        turn = paced[0] if self._pacer.start() else None
        later = [item for item in paced if item is not turn]
        if later:
            now = self._clock()
            waits = self._pacer.schedule(len(later))
            async with self._db.write() as session:
                for item, wait in zip(later, waits, strict=True):
                    await mark_not_yet(session, item, due=now + timedelta(seconds=wait))
            self.stats.put_back += len(later)
        return [item for item in items if item not in later], turn

    async def _deliver_paced(
        self, item: ClaimedItem, preloaded: object | None
    ) -> _Delivered | None:
        try:
            return await self._deliver(item, preloaded)
        finally:
            self._pacer.finish()

    async def drain(self, max_rounds: int = 1000) -> None:
        """Deliver until nothing is due and no notification is under way (for tests and the
        command line)."""
        for _ in range(max_rounds):
            finished = self._local_finished
            if await self.deliver_due() == 0:
                if self._local_tasks:
                    await self._local_done()
                elif self._local_finished == finished:
                    return
                # Else a notification finished during the claim, which may have skipped its
                # receiver's next item (PostgreSQL: its row was locked by the recording): again.

    async def _local_done(self) -> None:
        if self._local_tasks:
            await asyncio.gather(*self._local_tasks, return_exceptions=True)

    def _start_local(self, item: ClaimedItem) -> bool:
        """Start the item in a task of its own when its action calls no GitHub."""
        action = known_action(item.action)
        handler = self._local_handlers.get(action) if action is not None else None
        if handler is None:
            return False
        task = asyncio.create_task(self._deliver_local(item, handler), name=f"outbox-{item.id}")
        self._local_tasks.add(task)
        task.add_done_callback(self._local_tasks.discard)
        return True

    async def _deliver_local(self, item: ClaimedItem, handler: LocalHandler) -> None:
        try:
            await self._run_local(item, handler)
        except (OSError, SQLAlchemyError) as exc:
            # The outcome is not recorded: the item is taken again when its lease ends.
            log.error("outbox item %d: outcome not recorded: %s", item.id, type(exc).__name__)
        finally:
            self._local_finished += 1
            self.wake()  # the receiver's next item may go now

    async def _run_local(self, item: ClaimedItem, handler: LocalHandler) -> None:
        try:
            await asyncio.wait_for(handler(item), self._delivery_timeout)
        except TimeoutError:
            await self._retry_local(item, RetryLater("delivery timed out"))
        except RetryLater as exc:
            await self._retry_local(item, exc)
        except RefusedForGood as exc:
            await self._fail(item, exc.reason)
        except Exception as exc:
            log.exception("outbox item %d (%s) failed", item.id, item.action)
            await self._retry_local(item, RetryLater(f"internal error: {type(exc).__name__}"))
        else:
            async with self._db.write() as session:
                await mark_delivered(session, item.id, self._clock())
            self.stats.delivered += 1

    async def _retry_local(self, item: ClaimedItem, exc: RetryLater) -> None:
        await self._try_later(
            item, exc.reason, exc.retry_after, uncertain=False, max_backoff=RECEIVER_MAX_BACKOFF
        )

    async def _preload(self, items: list[ClaimedItem]) -> dict[int, object]:
        """What the round's handlers would read one by one, read by action in one session:
        a few queries a round instead of a transaction (and on PostgreSQL several round trips)
        for every item. Should that fail, each handler reads for itself."""
        by_action: dict[Action, list[ClaimedItem]] = defaultdict(list)
        for item in items:
            action = known_action(item.action)
            if action in PRELOADERS:
                by_action[action].append(item)
        if not by_action:
            return {}
        preloaded: dict[int, object] = {}
        try:
            async with self._db.read() as session:
                for action, group in by_action.items():
                    preloaded.update(await PRELOADERS[action](session, group))
        except (OSError, SQLAlchemyError):
            log.exception("outbox round: preloading failed; each item reads for itself")
            return {}
        return preloaded

    async def _deliver(self, item: ClaimedItem, preloaded: object | None) -> _Delivered | None:
        """Make the item's GitHub calls; returns what to record when it was carried out (a
        retry or a refusal is recorded here, and None returned)."""
        # gather() runs each item in a task of its own: these fields stay with this item's lines.
        add_log_context(
            deployment_id=item.deployment_id, release_candidate=item.release_candidate_id
        )
        handler = handler_for(self._handlers, item.action)
        if handler is None:
            await self._fail_unknown(item)
            return None
        try:
            if self._client is None:  # never claimed without a GitHub App (`actions`)
                raise GitHubUnavailable(NO_GITHUB_APP)
            installation_id = await self.installation_for(item.repo)
            if installation_id is None:
                raise GitHubRefused(404, NOT_INSTALLED)
            context = EffectContext(
                client=self._client,
                db=self._db,
                clock=self._clock,
                mirror=self._mirror,
                installation_id=installation_id,
                lost_dispatch_grace=self._lease.total_seconds() * LOST_DISPATCH_GRACE_LEASES,
                time_budget=self._delivery_timeout,
                preloaded=preloaded,
                warned=self._warned,
                memberships=self.memberships,
            )
            record = await asyncio.wait_for(handler(context, item), self._delivery_timeout)
        except TimeoutError:
            await self._retry(item, GitHubUnavailable("delivery timed out", ambiguous=True))
            return None
        except CheckAgain as exc:
            await self._check_again(item, exc)
            return None
        except GitHubUnavailable as exc:
            await self._retry(item, exc)
            return None
        except GitHubRefused as exc:
            await self._fail(item, str(exc))
            return None
        except Exception as exc:
            log.exception("outbox item %d (%s) failed", item.id, item.action)
            error = GitHubUnavailable(f"internal error: {type(exc).__name__}")
            await self._retry(item, error, max_backoff=MAX_BACKOFF)
            return None
        return _Delivered(item, record)

    async def _record_delivered(self, delivered: list[_Delivered]) -> None:
        """The outcomes of a round's carried-out items, in one transaction: one commit (one
        fsync on SQLite) per round, not per item. Each item's record runs in a savepoint of
        its own, so one that fails leaves the others recorded; its item stays claimed with no
        outcome and is retried, as uncertain, when its lease ends."""
        if not delivered:
            return
        async with self._db.write() as session:
            recorded = []
            for done in delivered:
                if done.record is not None:
                    try:
                        async with session.begin_nested():
                            await done.record(session)
                    except SQLAlchemyError:
                        log.exception("outbox item %d: outcome not recorded", done.item.id)
                        continue
                recorded.append(done.item.id)
            await mark_all_delivered(session, recorded, self._clock())
        self.stats.delivered += len(recorded)

    async def installation_for(self, repo: str) -> int | None:
        """The installation serving `repo` (cached), None when the App is not installed there."""
        cached = self._installations.get(repo.lower())
        if cached is not None:
            return cached
        # One look-up at a time: the items of a round waiting here find it cached after it.
        async with self._installation_lookup:
            cached = self._installations.get(repo.lower())
            if cached is not None:
                return cached
            found = await self._look_up_installation(repo)
        if found is not None:
            self._installations[repo.lower()] = found
        return found

    async def _look_up_installation(self, repo: str) -> int | None:
        async with self._db.read() as session:
            known = await installation_for_repo(session, repo)
        if known is not None:
            return known
        assert self._client is not None  # only GitHub items look for an installation
        try:
            found = await endpoints.get_repository_installation(self._client, repo)
        except GitHubRefused as exc:
            if exc.status == 404:
                return None
            raise
        installation_id = int(found["id"])
        async with self._db.write() as session:
            await remember_repository(session, repo, installation_id, self._clock())
        return installation_id

    async def _retry(
        self,
        item: ClaimedItem,
        exc: GitHubUnavailable,
        *,
        max_backoff: timedelta = OUTAGE_MAX_BACKOFF,
    ) -> None:
        """Try the item again later: soon while GitHub is unreachable (`max_backoff`), not
        before a rate limit's time. Once an attempt may have landed, the item stays uncertain:
        a later attempt that surely did not (a rate limit, a refused connection) says nothing
        of it."""
        uncertain = exc.ambiguous or item.uncertain
        await self._try_later(
            item, exc.reason, exc.retry_after, uncertain=uncertain, max_backoff=max_backoff
        )

    async def _try_later(
        self,
        item: ClaimedItem,
        reason: str,
        retry_after: float | None,
        *,
        uncertain: bool,
        max_backoff: timedelta,
    ) -> None:
        now = self._clock()
        not_before = now + timedelta(seconds=retry_after) if retry_after is not None else None
        async with self._db.write() as session:
            due = await mark_retry(
                session,
                item.id,
                error=reason,
                attempts=item.attempts,
                now=now,
                not_before=not_before,
                uncertain=uncertain,
                max_backoff=max_backoff,
            )
        self.stats.retried += 1
        _say_when(logging.WARNING, item, reason, "next attempt", due)

    async def _check_again(self, item: ClaimedItem, exc: CheckAgain) -> None:
        due = self._clock() + timedelta(seconds=exc.after)
        async with self._db.write() as session:
            await mark_check_again(
                session, item.id, reason=exc.reason, due=due, payload=exc.payload
            )
        self.stats.retried += 1
        _say_when(logging.INFO, item, exc.reason, "looking again", due)

    async def _fail(self, item: ClaimedItem, reason: str) -> None:
        now = self._clock()
        async with self._db.write() as session:
            await mark_failed(session, item.id, error=reason, now=now)
            if item.deployment_id is not None:
                deployment = await session.get(Deployment, item.deployment_id)
                if deployment is not None and deployment.error_message is None:
                    deployment.error_message = f"GitHub refused {item.action}: {reason}"[:2000]
            action = known_action(item.action)
            on_refusal = ON_REFUSAL.get(action) if action is not None else None
            if on_refusal is not None:
                await on_refusal(session, self._mirror, item, reason, now)
        self.stats.failed += 1
        log.error("outbox item %d (%s) refused for good: %s", item.id, item.action, reason)

    async def _fail_unknown(self, item: ClaimedItem) -> None:
        """An action this code has no handler for (written by a newer version, say): said once,
        and failed, so it is not retried every few minutes for ever."""
        error = UNKNOWN_ACTION.format(action=item.action)
        async with self._db.write() as session:
            await mark_failed(session, item.id, error=error, now=self._clock())
        self.stats.failed += 1
        log.error("outbox item %d (%s, %s): %s", item.id, item.action, item.ordering_key, error)


def handler_for(handlers: Mapping[Action, Handler], action: str) -> Handler | None:
    """The handler of a stored action name; None when no `Action` has that name or no handler
    is registered for it."""
    known = known_action(action)
    return handlers.get(known) if known is not None else None


def _say_when(level: int, item: ClaimedItem, reason: str, what: str, due: datetime) -> None:
    log.log(
        level,
        "outbox item %d (%s, %s): %s; %s at %s",
        item.id,
        item.action,
        item.ordering_key,
        reason,
        what,
        due.isoformat(timespec="seconds"),
    )
