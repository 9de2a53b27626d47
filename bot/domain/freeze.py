"""Freezes: a frozen environment takes no new deployment and no rollback without force.

Status reports are never blocked: they describe what already happened.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from bot.core import errors


@dataclass(frozen=True)
class Freeze:
    reason: str | None
    by: str | None
    since: datetime
    until: datetime | None


class FreezeFacts(Protocol):
    """An environment's freeze, as stored: `frozen_at` None when it was never frozen or was
    unfrozen."""

    @property
    def frozen_at(self) -> datetime | None: ...

    @property
    def frozen_by(self) -> str | None: ...

    @property
    def frozen_reason(self) -> str | None: ...

    @property
    def frozen_until(self) -> datetime | None: ...


class Freezable(Protocol):
    frozen_at: datetime | None
    frozen_by: str | None
    frozen_reason: str | None
    frozen_until: datetime | None


def current_freeze(environment: FreezeFacts, now: datetime) -> Freeze | None:
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


def ensure_not_frozen(environment: FreezeFacts, now: datetime, *, force: bool = False) -> None:
    if not force and current_freeze(environment, now) is not None:
        raise errors.invalid(errors.ENVIRONMENT_FROZEN)


def freeze_after(
    environment: FreezeFacts,
    *,
    reason: str | None,
    by: str | None,
    until: datetime | None,
    now: datetime,
) -> Freeze:
    """The freeze that freezing at `now` leaves (or re-freezing with a new reason or end):
    `since` stays when already frozen; an end already past is refused."""
    if until is not None and until <= now:
        raise errors.invalid(errors.FREEZE_UNTIL_IN_PAST)
    frozen = current_freeze(environment, now)
    return Freeze(
        reason=reason,
        by=by,
        since=frozen.since if frozen is not None else now,
        # Stored and answered in UTC, like every other timestamp (the client may send any
        # offset).
        until=until.astimezone(UTC) if until is not None else None,
    )


def freeze_environment(
    environment: Freezable,
    *,
    reason: str | None,
    by: str | None,
    until: datetime | None,
    now: datetime,
) -> None:
    """Freeze `environment` as `freeze_after` decides."""
    _write(environment, freeze_after(environment, reason=reason, by=by, until=until, now=now))


def unfreeze_environment(environment: Freezable) -> None:
    _write(environment, None)


def _write(environment: Freezable, freeze: Freeze | None) -> None:
    environment.frozen_at = freeze.since if freeze is not None else None
    environment.frozen_by = freeze.by if freeze is not None else None
    environment.frozen_reason = freeze.reason if freeze is not None else None
    environment.frozen_until = freeze.until if freeze is not None else None
