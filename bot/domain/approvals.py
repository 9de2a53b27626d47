"""Approvals: a deploy to an environment with `approvals: {required: N}` waits, `pending`,
until N distinct people other than the one who asked approve that deployment.

- An approval is for one deployment (so one candidate in one environment) and counts until it
  expires (`expire_minutes` after it was given); a person approves once, again changes nothing.
- The person who asked for the deploy cannot approve it.
- With `from`, only those may approve: a repository role (`write`, `maintain`, `admin`, each
  with the roles above it) or a member of a team (`@org/team-slug`); the door that knows the
  person (a pull-request command, the dashboard signed in with GitHub) tells whether they are.
  An API token has no GitHub person behind it: it may approve only where `from` is empty.
- `reject` cancels the deployment waiting, with a reason.

One GitHub user is one person whichever door they come through: the pull-request commands
record them as `github:<login>`, the dashboard as `<login>` (`person`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.core import errors

ROLE_ORDER = ("write", "maintain", "admin")
# How the pull-request door names a GitHub user (bot/github/commands/request.py).
GITHUB_ACTOR_PREFIX = "github:"


def person(actor: str) -> str:
    """Who an actor name is, the same through every door: GitHub logins are
    case-insensitive, and `github:octocat` is `octocat`."""
    return actor.lower().removeprefix(GITHUB_ACTOR_PREFIX)


@dataclass(frozen=True)
class ApprovalRule:
    required: int
    approvers: tuple[str, ...] = ()
    expire: timedelta = timedelta(hours=24)

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> ApprovalRule:
        return cls(
            required=int(stored["required"]),
            approvers=tuple(stored.get("from") or ()),
            expire=timedelta(minutes=int(stored.get("expire_minutes") or 24 * 60)),
        )

    @property
    def teams(self) -> tuple[str, ...]:
        """`@org/team` entries, as (org/team) without the @."""
        return tuple(entry[1:] for entry in self.approvers if entry.startswith("@"))


class Given(Protocol):
    @property
    def approver(self) -> str: ...

    @property
    def expires_at(self) -> datetime: ...


def counted_approvers(given: Iterable[Given], now: datetime) -> set[str]:
    """The distinct people (`person`) whose approval still counts at `now`."""
    return {person(a.approver) for a in given if a.expires_at > now}


def waiting_text(count: int, required: int) -> str:
    """What `waiting_for` says of a deployment waiting for approval."""
    return f"approval ({count} of {required})"


def role_allows(role: str, wanted: str) -> bool:
    """Whether a repository role (as GitHub names it: maintain shows as `maintain` in
    `role_name`) is `wanted` or above it."""
    if role not in ROLE_ORDER or wanted not in ROLE_ORDER:
        return False
    return ROLE_ORDER.index(role) >= ROLE_ORDER.index(wanted)


@dataclass(frozen=True)
class Approver:
    """Who approves: their name as recorded, and what the door knows of them. `role` None and
    `teams` empty for an API token."""

    actor: str
    role: str | None = None
    teams: frozenset[str] = frozenset()
    via_github: bool = False


def may_approve(rule: ApprovalRule, approver: Approver) -> bool:
    """Whether `approver` is one the rule's `from` names (anyone, when it names none)."""
    if not rule.approvers:
        return True
    if not approver.via_github:
        return False
    for entry in rule.approvers:
        if entry.startswith("@"):
            if entry[1:].lower() in {team.lower() for team in approver.teams}:
                return True
        elif approver.role is not None and role_allows(approver.role, entry):
            return True
    return False


def approval_refusal(
    rule: ApprovalRule, approver: Approver, requester: str | None
) -> errors.DomainError | None:
    """Why `approver` may not approve a deployment `requester` asked for, or None."""
    if requester is not None and person(approver.actor) == person(requester):
        return errors.invalid(errors.SELF_APPROVAL)
    if not may_approve(rule, approver):
        named = ", ".join(rule.approvers)
        how = "" if approver.via_github else " (signed in with GitHub or on the pull request)"
        return errors.invalid(
            errors.NOT_AN_APPROVER,
            f"{errors.NOT_AN_APPROVER.value}: approvals here come from {named}{how}",
        )
    return None
