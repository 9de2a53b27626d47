"""What each outbox action does on GitHub.

A handler makes its GitHub calls and returns a `Recorder`: the database writes its outcome
implies, which the worker runs in the same transaction that marks the item delivered, so an
outcome is recorded exactly when the item is done. Handlers register by action:

    @effect(Action.POST_COMMENT)
    async def post_comment(ctx: EffectContext, item: ClaimedItem) -> Recorder | None: ...

An action may also register a `Preloader`: what its handlers read from the database, read for
all of a round's items of that action in one query, in the transaction that claims them. A
handler finds its item's part in `ctx.preloaded` and reads for itself when it is not there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import Mirror
from bot.core.clock import Clock
from bot.github.access import TeamMemberships
from bot.github.client import GitHubClient

# Re-exported for bot/github/outbound/comments.py until it calls bot/github/endpoints.py.
from bot.storage.db import Database
from bot.storage.outbox import Action, ClaimedItem

Recorder = Callable[[AsyncSession], Awaitable[None]]


@dataclass(frozen=True)
class EffectContext:
    client: GitHubClient
    db: Database
    clock: Clock
    mirror: Mirror
    installation_id: int  # the installation serving the item's repository
    # How long a dispatch whose answer was lost waits for its run to show up (through a
    # workflow_run event) before it is sent again.
    lost_dispatch_grace: float = 120.0
    # How long a handler may take before the worker gives up on it (its lease is longer).
    time_budget: float = 12.0
    # What the action's preloader read for this item, if it has one (see `preload`).
    preloaded: object | None = None
    # Warnings the worker's process has given already (said once, not on every item).
    warned: set[str] = field(default_factory=set)
    # Team memberships, cached across items (who may approve: bot/github/access.py).
    memberships: TeamMemberships | None = None


class CheckAgain(Exception):
    """The handler looked on GitHub for what an earlier attempt may have done and cannot tell
    yet: the worker takes the item again `after` seconds from now (no backoff), uncertain,
    with `payload` as the item's payload (what the looking remembers between attempts)."""

    def __init__(self, reason: str, *, after: float, payload: dict[str, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after
        self.payload = payload


Handler = Callable[[EffectContext, ClaimedItem], Awaitable[Recorder | None]]
# What to record when GitHub refuses an item for good (e.g. the deployment's error message).
RefusalHandler = Callable[[AsyncSession, Mirror, ClaimedItem, str, datetime], Awaitable[None]]

# Item id -> what its handler would otherwise read for itself.
Preloader = Callable[[AsyncSession, Sequence[ClaimedItem]], Awaitable[dict[int, object]]]

HANDLERS: dict[Action, Handler] = {}
ON_REFUSAL: dict[Action, RefusalHandler] = {}
PRELOADERS: dict[Action, Preloader] = {}
# The actions whose calls create content on GitHub: delivered one at a time, paced
# (bot/github/outbound/pacing.py).
PACED: set[Action] = set()


def effect(action: Action, *, paced: bool = False) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        if action in HANDLERS:
            raise ValueError(f"two handlers for outbox action {action!r}")
        HANDLERS[action] = handler
        if paced:
            PACED.add(action)
        return handler

    return register


def on_refusal(action: Action) -> Callable[[RefusalHandler], RefusalHandler]:
    def register(handler: RefusalHandler) -> RefusalHandler:
        ON_REFUSAL[action] = handler
        return handler

    return register


def preload(*actions: Action) -> Callable[[Preloader], Preloader]:
    def register(preloader: Preloader) -> Preloader:
        for action in actions:
            PRELOADERS[action] = preloader
        return preloader

    return register


def recording(statement: Executable) -> Recorder:
    """The recorder that runs one statement in the worker's transaction (e.g. the run a
    dispatch started, stored on its deployment or candidate)."""

    async def record(session: AsyncSession) -> None:
        await session.execute(statement)

    return record
