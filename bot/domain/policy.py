"""The release policy: whether a candidate may be deployed to an environment now, and what a
deploy through each door must wait for.

An environment's rules come from the projects file (bot/config/policy.py) and are checked
here, one function each, in this order, for deploys from every door (the API, pull-request
commands, the dashboard, auto-deploy and GitHub's deployment protection rule):

1. `candidate_rejection`: a candidate marked bad is refused everywhere, force or not (clear
   the mark to deploy it), and is never a rollback target (bot/domain/rollback.py).
2. The manual freeze (bot/domain/freeze.py) and `calendar_freeze` (bot/domain/calendar.py):
   refused while in effect, unless forced.
3. `promotion_refusal`: with `requires`, the candidate must be running in each required
   environment, its deployment there having succeeded at least `soak_minutes` ago, with no
   failure there since. Unless forced. Rollbacks are exempt.
4. `approvals_required`: with `approvals`, the deploy waits for that many people other than
   the one who asked (bot/domain/approvals.py). Force does not skip it; rollbacks are exempt.

`force` needs a reason (`ensure_force_reason`), except for the one override the API has
always had: a rollback of a manually frozen environment (`{"force": true}`). Who may force is
the door's business (maintain or admin on GitHub; an API token may). What force overrode is
audited (bot/app/audit.py).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from bot.core import errors
from bot.domain.approvals import ApprovalRule
from bot.domain.calendar import Span, Window, freeze_at, next_window, windows_from_stored
from bot.domain.statuses import DeploymentStatus

# What ends a stay in a required environment: the newest of these is what it holds.
ENDED_STATUSES = (DeploymentStatus.SUCCESS, DeploymentStatus.FAILURE, DeploymentStatus.ERROR)


class Door(StrEnum):
    """Through what a deploy or a decision came."""

    API = "api"
    PULL_REQUEST = "pull_request"
    DASHBOARD = "dashboard"
    AUTO_DEPLOY = "auto_deploy"
    PROTECTION_RULE = "protection_rule"


@dataclass(frozen=True)
class Ask:
    """Who asks for a deploy or a rollback, through which door, and whether they force it
    (with why)."""

    actor: str | None
    door: Door
    force: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class EnvironmentPolicy:
    requires: tuple[str, ...] = ()
    soak: timedelta = timedelta(0)
    windows: tuple[Window, ...] = ()
    approvals: ApprovalRule | None = None

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any] | None) -> EnvironmentPolicy:
        """The policy the database keeps (`EnvironmentConfig.policy`); read once a process
        for each distinct content, since every deploy asks."""
        if not stored:
            return NO_POLICY
        return _policy_from_text(json.dumps(stored, sort_keys=True))

    @classmethod
    def _parse(cls, stored: Mapping[str, Any]) -> EnvironmentPolicy:
        approvals = stored.get("approvals")
        return cls(
            requires=tuple(stored.get("requires") or ()),
            soak=timedelta(minutes=int(stored.get("soak_minutes") or 0)),
            windows=windows_from_stored(stored.get("freezes") or ()),
            approvals=ApprovalRule.from_stored(approvals) if approvals else None,
        )


NO_POLICY = EnvironmentPolicy()


@functools.lru_cache(maxsize=4096)
def _policy_from_text(text: str) -> EnvironmentPolicy:
    return EnvironmentPolicy._parse(json.loads(text))


class Stay(Protocol):
    """The newest deployment that ended in a required environment (ENDED_STATUSES)."""

    @property
    def release_candidate_id(self) -> int: ...

    @property
    def status(self) -> str: ...

    @property
    def deploy_end_at(self) -> datetime | None: ...


@dataclass(frozen=True)
class Required:
    """A required environment and what it holds: its name and its newest ended deployment
    (None: nothing ended there yet), with the version that deployment ran."""

    environment: str
    newest_ended: Stay | None
    running_version: str | None = None


@dataclass(frozen=True)
class Candidate:
    id: int
    version: str
    rejected_reason: str | None = None
    rejected_by: str | None = None
    rejected_at: datetime | None = None


def candidate_rejection(candidate: Candidate) -> errors.DomainError | None:
    """Rule 1: a candidate marked bad takes no deploy."""
    if candidate.rejected_at is None:
        return None
    by = f" by {candidate.rejected_by}" if candidate.rejected_by else ""
    return errors.invalid(
        errors.CANDIDATE_REJECTED,
        f"{errors.CANDIDATE_REJECTED.value}{by}: {candidate.rejected_reason}; clear the mark "
        "to deploy it",
    )


def calendar_freeze(policy: EnvironmentPolicy, now: datetime) -> Span | None:
    """Rule 2's calendar: the window in effect at `now`, with when the freeze ends."""
    if not policy.windows:
        return None
    return freeze_at(policy.windows, now)


def upcoming_window(policy: EnvironmentPolicy, now: datetime) -> Span | None:
    if not policy.windows:
        return None
    return next_window(policy.windows, now)


def calendar_refusal(span: Span) -> errors.DomainError:
    return errors.invalid(
        errors.FROZEN_BY_CALENDAR,
        f"Environment is frozen until {span.local_end()} by its calendar window "
        f"'{span.window.name}': {span.window.reason}; deploy with force and a reason to "
        "override it",
    )


def promotion_refusal(
    policy: EnvironmentPolicy,
    candidate: Candidate,
    environment: str,
    required: Sequence[Required],
    now: datetime,
) -> errors.DomainError | None:
    """Rule 3, for each required environment in the file's order: the first one the
    candidate has not passed, or has not soaked in long enough, says what is missing and
    when it will not be."""
    for stay in required:
        newest = stay.newest_ended
        where = stay.environment
        if newest is None or newest.release_candidate_id != candidate.id:
            running = f"it runs {stay.running_version}" if stay.running_version else "it runs none"
            return errors.invalid(
                errors.NOT_PROMOTED,
                f"{candidate.version} must succeed in {where} before it goes to {environment} "
                f"({running}); deploy it to {where} first",
            )
        if newest.status != DeploymentStatus.SUCCESS or newest.deploy_end_at is None:
            return errors.invalid(
                errors.NOT_PROMOTED,
                f"{candidate.version} must succeed in {where} before it goes to {environment} "
                f"(its deployment there ended {newest.status}); deploy it to {where} again",
            )
        ready_at = newest.deploy_end_at + policy.soak
        if ready_at > now:
            left = _minutes(ready_at - now)
            soaked = _minutes(now - newest.deploy_end_at, up=False)
            return errors.invalid(
                errors.STILL_SOAKING,
                f"{candidate.version} has soaked in {where} for {soaked} of the "
                f"{_minutes(policy.soak)} minutes {environment} requires: it may go to "
                f"{environment} from {ready_at.strftime('%Y-%m-%d %H:%M:%S')} UTC ({left} "
                "minutes from now)",
            )
    return None


def ensure_force_reason(ask: Ask, *, spec_rollback_override: bool = False) -> None:
    """Force needs a reason, recorded in the audit; the API's rollback of a manually frozen
    environment (`{"force": true}`) has never needed one."""
    if ask.force and not (ask.reason or "").strip() and not spec_rollback_override:
        raise errors.invalid(errors.FORCE_NEEDS_REASON)


@dataclass
class Decision:
    """What the rules said of one deploy: allowed (perhaps only by force, `overridden` says
    what it overrode) and how many approvals it must wait for."""

    overridden: list[str] = field(default_factory=list)
    approvals_required: int = 0


def overridable(ask: Ask, refusal: errors.DomainError | None, decision: Decision) -> None:
    """A refusal that force overrides: raised without force, noted with it."""
    if refusal is None:
        return
    if not ask.force:
        raise refusal
    decision.overridden.append(refusal.message)


def approvals_required(policy: EnvironmentPolicy, *, rollback: bool) -> int:
    """Rule 4: how many approvals a new deployment waits for."""
    if rollback or policy.approvals is None:
        return 0
    return policy.approvals.required


def _minutes(delta: timedelta, *, up: bool = True) -> int:
    seconds = delta.total_seconds()
    whole = int(seconds // 60)
    return whole + 1 if up and seconds % 60 else whole
