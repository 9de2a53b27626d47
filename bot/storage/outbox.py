"""The outbox: every GitHub call a change implies, stored in the same transaction as the change.

A worker (bot/github/outbound/worker.py) delivers the items. Items that share an
`ordering_key` go one after the other in id order (a deployment's status needs its GitHub
deployment first); items with different keys go in parallel. Several processes on one
PostgreSQL share the outbox: claiming uses `FOR UPDATE SKIP LOCKED` and a lease, so no item
is delivered twice at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bot.storage.db import note_outbox_enqueued
from bot.storage.models import Deployment, OutboxItem, ReleaseCandidate

# How long a claimed item stays with its worker before another may take it (the worker died).
# The worker gives up on a delivery well before its lease ends (see
# bot/github/outbound/worker.py), at 12 s: past the 10 s after which GitHub gives up on a request
# itself. Short, because a process
# killed mid-call holds its items this long: a deploy then starts this much later.
DEFAULT_LEASE = timedelta(seconds=15)
MAX_BACKOFF = timedelta(minutes=10)
# While GitHub is down (5xx, refused connections, timeouts) retries stay this close together,
# so what waited is delivered soon after GitHub is back; rate limits keep their own time.
OUTAGE_MAX_BACKOFF = timedelta(seconds=10)
# A call that may have landed (its answer was lost, or it was given up while in flight) is
# checked on GitHub no sooner than this: a request still on its way has landed by then, so the
# check sees it instead of repeating it.
UNCERTAIN_SETTLE = timedelta(seconds=10)
MAX_KEY = 100  # the ordering_key column's length
# A notification receiver that fails (5xx, timeouts, refused connections) is tried again no
# later than this: one back from an outage gets its backlog within a minute, and one down for
# a day costs a request a minute, not one every 10 s as GitHub's outages do.
RECEIVER_MAX_BACKOFF = timedelta(minutes=1)


class Action(StrEnum):
    """What an outbox item asks for; stored as its string value, so items written by an older
    version read the same. Each has its handler in bot/github/outbound/ (`@effect`)."""

    RESOLVE_TAG = "resolve_tag"
    DISPATCH_BUILD_WORKFLOW = "dispatch_build_workflow"
    CREATE_GITHUB_DEPLOYMENT = "create_github_deployment"
    DISPATCH_DEPLOY_WORKFLOW = "dispatch_deploy_workflow"
    POST_DEPLOYMENT_STATUS = "post_deployment_status"
    CANCEL_WORKFLOW_RUN = "cancel_workflow_run"
    ADD_REACTION = "add_reaction"
    RUN_COMMAND = "run_command"
    POST_COMMENT = "post_comment"
    FETCH_CHANGE_REPORT = "fetch_change_report"
    UPDATE_PULL_REQUEST_NOTE = "update_pull_request_note"
    PUBLISH_RELEASE = "publish_release"
    ANNOUNCE_SHIPPED = "announce_shipped"
    # The answer to a GitHub deployment protection rule's review request (approve or reject
    # one run's job for one environment).
    ANSWER_PROTECTION_RULE = "answer_protection_rule"
    # A message to a notification receiver (bot/notify/); it calls no GitHub.
    NOTIFY = "notify"


def known_action(name: str) -> Action | None:
    """The `Action` a stored action name is; None for a name this code does not know."""
    known = Action._value2member_map_.get(name)
    return known if isinstance(known, Action) else None


class OutboxState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # GitHub refused it and retrying cannot change that


def deployment_key(deployment_id: int) -> str:
    return f"deployment:{deployment_id}"


def release_candidate_key(release_candidate_id: int) -> str:
    return f"release_candidate:{release_candidate_id}"


def comment_key(comment_id: int) -> str:
    return f"comment:{comment_id}"


def change_report_key(report_id: int) -> str:
    return f"change_report:{report_id}"


def pull_request_key(repo: str, number: int) -> str:
    """Everything about one pull request's note, in order."""
    key = f"pr:{repo.lower()}:{number}"
    if len(key) <= MAX_KEY:
        return key
    # A long repository name: a digest of it, so the number (what tells notes apart) stays.
    digest = hashlib.sha256(repo.lower().encode()).hexdigest()[:32]
    return f"pr:{digest}:{number}"


def shipped_key(environment_id: int) -> str:
    return f"shipped:{environment_id}"


def protection_rule_key(run_id: int) -> str:
    """A run's answers to its protection rules, in order."""
    return f"protection_rule:{run_id}"


def tag_key(repo: str, tag: str) -> str:
    return f"tag:{repo.lower()}:{tag}"[:100]


def receiver_key(project: str, receiver: str) -> str:
    """One receiver's messages, in order: a failing receiver holds up only its own queue (one
    item in flight at a time, so a crash repeats at most one of its messages)."""
    return f"notify:{project}:{receiver}"


class RetryLater(Exception):
    """What a `LocalHandler` raises when its receiver failed and may not next time (5xx,
    timeout, refused connection, 429): tried again with backoff, not before `retry_after`
    seconds."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class RefusedForGood(Exception):
    """What a `LocalHandler` raises when its receiver refused the item and would again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# The handler of an action that calls no GitHub (a notification): it delivers the item or
# raises RetryLater or RefusedForGood, and the worker records which.
LocalHandler = Callable[["ClaimedItem"], Awaitable[None]]


async def enqueue(
    session: AsyncSession,
    *,
    action: Action,
    ordering_key: str,
    repo: str,
    now: datetime,
    payload: dict[str, Any] | None = None,
    deployment_id: int | None = None,
    release_candidate_id: int | None = None,
) -> OutboxItem:
    """Add an item in the caller's transaction: it exists exactly when the change commits, and
    the outbox workers are woken then (`Database.write()`)."""
    item = OutboxItem(
        ordering_key=ordering_key,
        action=str(action),
        repo=repo,
        payload=payload or {},
        deployment_id=deployment_id,
        release_candidate_id=release_candidate_id,
        state=OutboxState.PENDING,
        attempts=0,
        uncertain=False,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(item)
    await session.flush()
    note_outbox_enqueued(session)
    return item


@dataclass(frozen=True)
class ClaimedItem:
    """An item taken by a worker. `uncertain` means an earlier attempt may have reached GitHub
    without its outcome being recorded (the process died mid-call)."""

    id: int
    ordering_key: str
    action: str
    repo: str
    payload: dict[str, Any]
    deployment_id: int | None
    release_candidate_id: int | None
    attempts: int
    uncertain: bool
    previous_error: str | None  # what the last attempt recorded, if anything
    created_at: datetime
    # When this attempt was due: the end of the previous attempt's lease, or the time its
    # recorded outcome set. Whatever the previous attempt sent, it sent before then.
    due_at: datetime


async def claim_due(
    session: AsyncSession,
    now: datetime,
    limit: int,
    lease: timedelta = DEFAULT_LEASE,
    *,
    actions: Collection[str] | None = None,
) -> list[ClaimedItem]:
    """Take up to `limit` due items, each the oldest pending one of its ordering key; only
    those of `actions` when given (without a GitHub App, the notifications alone).

    Claiming counts the attempt and sets a lease (next_attempt_at = now + lease), committed by
    the caller before any GitHub call: an item found later with a counted attempt whose outcome
    was never recorded is `uncertain`.
    """
    earlier = aliased(OutboxItem)
    # The head of each key in one pass over the pending items (a hash aggregate on
    # PostgreSQL). As a correlated `ORDER BY id LIMIT 1` per candidate, or as NOT EXISTS,
    # PostgreSQL ran a subquery for every due item before sorting them: 40-80 ms a claim with
    # a backlog of 10 000, against about 9 ms this way.
    heads = (
        select(func.min(earlier.id))
        .where(earlier.state == OutboxState.PENDING)
        .group_by(earlier.ordering_key)
    )
    only = [OutboxItem.action.in_(sorted(actions))] if actions is not None else []
    due = (
        select(
            OutboxItem.id,
            OutboxItem.ordering_key,
            OutboxItem.action,
            OutboxItem.repo,
            OutboxItem.payload,
            OutboxItem.deployment_id,
            OutboxItem.release_candidate_id,
            OutboxItem.attempts,
            OutboxItem.uncertain,
            OutboxItem.last_error,
            OutboxItem.created_at,
            OutboxItem.next_attempt_at,
        )
        .where(
            OutboxItem.state == OutboxState.PENDING,
            OutboxItem.next_attempt_at <= now,
            OutboxItem.id.in_(heads),
            *only,
        )
        .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=OutboxItem)
    )
    # Plain rows and one UPDATE for the lot: no ORM objects to build and flush one by one.
    rows = (await session.execute(due)).all()
    if not rows:
        return []
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id.in_([row.id for row in rows]))
        .values(
            attempts=OutboxItem.attempts + 1,
            next_attempt_at=now + lease,
            last_error=None,
            uncertain=False,
        )
        .execution_options(synchronize_session=False)
    )
    return [
        ClaimedItem(
            id=row.id,
            ordering_key=row.ordering_key,
            action=row.action,
            repo=row.repo,
            payload=dict(row.payload),
            deployment_id=row.deployment_id,
            release_candidate_id=row.release_candidate_id,
            attempts=row.attempts + 1,
            # A counted attempt with no recorded outcome: the process died mid-call.
            uncertain=row.uncertain or (row.attempts > 0 and row.last_error is None),
            previous_error=row.last_error,
            created_at=row.created_at,
            due_at=row.next_attempt_at,
        )
        for row in rows
    ]


async def mark_delivered(session: AsyncSession, item_id: int, now: datetime) -> None:
    await mark_all_delivered(session, [item_id], now)


async def mark_all_delivered(session: AsyncSession, item_ids: list[int], now: datetime) -> None:
    """Several items delivered, in one statement (a worker's round)."""
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id.in_(item_ids))
        .values(state=OutboxState.DELIVERED, delivered_at=now, last_error=None)
    )


async def mark_retry(
    session: AsyncSession,
    item_id: int,
    *,
    error: str,
    attempts: int,
    now: datetime,
    not_before: datetime | None = None,
    uncertain: bool = False,
    max_backoff: timedelta = MAX_BACKOFF,
) -> datetime:
    """Record a failure that a later attempt may overcome; returns when that attempt is due.

    Backoff doubles from 1 s up to `max_backoff`; a rate limit's reset time comes first, and an
    uncertain item waits at least UNCERTAIN_SETTLE.
    """
    backoff = min(timedelta(seconds=2 ** min(attempts - 1, 20)), max_backoff)
    if uncertain:
        backoff = max(backoff, UNCERTAIN_SETTLE)
    due = now + backoff
    if not_before is not None and not_before > due:
        due = not_before
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(next_attempt_at=due, last_error=error[:2000], uncertain=uncertain)
    )
    return due


async def mark_check_again(
    session: AsyncSession,
    item_id: int,
    *,
    reason: str,
    due: datetime,
    payload: dict[str, Any],
) -> None:
    """An attempt that found GitHub not yet able to say whether an earlier one landed: look
    again at `due` exactly (no backoff), the item uncertain, with what the looking needs to
    remember in its payload."""
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(next_attempt_at=due, last_error=reason[:2000], uncertain=True, payload=payload)
    )


async def mark_not_yet(session: AsyncSession, item: ClaimedItem, *, due: datetime) -> None:
    """An item claimed whose turn has not come (bot/github/outbound/pacing.py): back as it was
    before the claim (the attempt not counted, uncertain and last error as they were), due at
    `due`. Nothing was sent, so nothing is learnt or lost."""
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item.id)
        .values(
            next_attempt_at=due,
            attempts=item.attempts - 1,
            uncertain=item.uncertain,
            last_error=item.previous_error,
        )
    )


async def mark_failed(session: AsyncSession, item_id: int, *, error: str, now: datetime) -> None:
    await session.execute(
        update(OutboxItem)
        .where(OutboxItem.id == item_id)
        .values(state=OutboxState.FAILED, last_error=error[:2000], delivered_at=now)
    )


async def pending_count(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count()).select_from(OutboxItem).where(OutboxItem.state == OutboxState.PENDING)
    )
    return int(count or 0)


# --- what the webhook handlers ask of the outbox -------------------------------------------


async def enqueued_before(session: AsyncSession, ordering_key: str) -> bool:
    """Whether any item was ever enqueued under `ordering_key` (delivered ones included)."""
    found = await session.scalar(
        select(OutboxItem.id).where(OutboxItem.ordering_key == ordering_key).limit(1)
    )
    return found is not None


def deploy_dispatch_not_yet_attempted() -> Exists:
    """SQL, correlated with `Deployment`: its deploy workflow's dispatch waits for its first
    attempt (so no run can be its yet)."""
    return _not_yet_attempted(
        Action.DISPATCH_DEPLOY_WORKFLOW, OutboxItem.deployment_id == Deployment.id
    )


def build_dispatch_not_yet_attempted() -> Exists:
    """SQL, correlated with `ReleaseCandidate`: its build workflow's dispatch waits for its
    first attempt (so no run can be its yet)."""
    return _not_yet_attempted(
        Action.DISPATCH_BUILD_WORKFLOW, OutboxItem.release_candidate_id == ReleaseCandidate.id
    )


def _not_yet_attempted(action: Action, belongs: ColumnElement[bool]) -> Exists:
    return (
        select(OutboxItem.id)
        .where(
            belongs,
            OutboxItem.action == action,
            OutboxItem.state == OutboxState.PENDING,
            OutboxItem.attempts == 0,
        )
        .exists()
    )
