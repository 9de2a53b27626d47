"""Freezes: a frozen environment takes no new deployment and no rollback without force.

Status reports are never blocked: they describe what already happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.core import errors
from bot.storage.models import Environment


@dataclass(frozen=True)
class Freeze:
    reason: str | None
    by: str | None
    since: datetime
    until: datetime | None


def current_freeze(environment: Environment, now: datetime) -> Freeze | None:
    """The freeze in effect at `now`; a freeze whose `until` has passed is over."""
    if environment.frozen_at is None:
        return None
    if environment.frozen_until is not None and environment.frozen_until <= now:
        return None
    return Freeze(
        reason=environment.frozen_reason,
        by=environment.frozen_by,
        since=environment.frozen_at,
        until=environment.frozen_until,
    )


def ensure_not_frozen(environment: Environment, now: datetime, *, force: bool = False) -> None:
    if not force and current_freeze(environment, now) is not None:
        raise errors.invalid(errors.ENVIRONMENT_FROZEN)


def freeze_environment(
    environment: Environment,
    *,
    reason: str | None,
    by: str | None,
    until: datetime | None,
    now: datetime,
) -> None:
    """Freeze (or re-freeze with a new reason or end). `since` stays when already frozen."""
    if until is not None and until <= now:
        raise errors.invalid(errors.FREEZE_UNTIL_IN_PAST)
    if current_freeze(environment, now) is None:
        environment.frozen_at = now
    environment.frozen_by = by
    environment.frozen_reason = reason
    # Stored and answered in UTC, like every other timestamp (the client may send any offset).
    environment.frozen_until = until.astimezone(UTC) if until is not None else None


def unfreeze_environment(environment: Environment) -> None:
    environment.frozen_at = None
    environment.frozen_by = None
    environment.frozen_reason = None
    environment.frozen_until = None
