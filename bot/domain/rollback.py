"""The running version and the rollback rule: which RC an environment goes back to.

The running version of an environment is the RC of its newest successful deployment.

1. An environment with no deployment has nothing to roll back from.
2. A frozen environment is rolled back only with `force`, checked before anything changes.
3. The target: when the newest deployment succeeded, the newest successfully deployed RC
   that is neither the running one, nor one an earlier rollback rolled away from, nor one
   marked bad (bot/domain/policy.py) (so rolling
   back twice goes back two versions, never forward again); otherwise (the newest deployment
   failed, errored, was canceled or is still under way) the running RC is deployed again —
   unless a rollback rolled away from it, as when a second rollback is asked for while the
   first is still under way: then the first one's target, the newest successful RC no
   rollback rolled away from, is deployed again (a double click never goes forward).
   The RC rolled away from, the newest deployment's, is remembered as rolled back here
   (unless it is the target itself).
4. A `rollback` deployment of the target is created, `pending`, and every active deployment
   of the environment is canceled ("Canceled by a rollback"), in the same transaction.

The history is never read whole: `target_search` says what the one indexed SELECT must find
(bot/storage/deployments.py `rollback_target`), and `rollback_target` is the same rule over a
history in memory, which the tests hold the query to.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from bot.core import errors
from bot.domain.environments import Removable, ensure_accepts_deployments
from bot.domain.freeze import FreezeFacts, ensure_not_frozen
from bot.domain.statuses import DeploymentStatus

CANCELED_BY_ROLLBACK = "Canceled by a rollback"


class Marked(Protocol):
    """A deployment as far as being rolled back to goes: its status and whether a rollback
    rolled away from its RC."""

    @property
    def status(self) -> str: ...

    @property
    def rolled_back_at(self) -> datetime | None: ...


class Deployed(Marked, Protocol):
    """One deployment of an environment's history, as the rule sees it."""

    @property
    def id(self) -> int: ...

    @property
    def release_candidate_id(self) -> int: ...


class RollbackEnvironment(FreezeFacts, Removable, Protocol):
    pass


D = TypeVar("D", bound=Deployed)
M = TypeVar("M", bound=Marked)


def running_deployment(history: Iterable[D]) -> D | None:
    """The deployment whose RC is the running version: the newest success of `history`
    (newest first). One under way, failed or canceled changes nothing until it succeeds."""
    return next((d for d in history if d.status == DeploymentStatus.SUCCESS), None)


def is_rollback_target(deployment: Marked) -> bool:
    """Whether a rollback may go back to this deployment's RC: it succeeded here and no
    rollback has rolled away from it since."""
    return deployment.status == DeploymentStatus.SUCCESS and deployment.rolled_back_at is None


@dataclass(frozen=True)
class TargetSearch:
    """What rule 3's target is: the newest deployment that `is_rollback_target`, of any RC
    but `excluded_candidate_id`."""

    excluded_candidate_id: int | None

    def matches(self, deployment: Deployed) -> bool:
        return (
            is_rollback_target(deployment)
            and deployment.release_candidate_id != self.excluded_candidate_id
        )


def ensure_may_roll_back(
    environment: RollbackEnvironment, newest: D | None, now: datetime, *, force: bool
) -> D:
    """Rules 1 and 2 (and a removed environment takes nothing new): the newest deployment,
    which the rollback goes back from."""
    if newest is None:
        raise errors.not_found(errors.NOTHING_TO_ROLL_BACK_TO)
    ensure_not_frozen(environment, now, force=force)
    ensure_accepts_deployments(environment)
    return newest


def target_search(newest: Deployed) -> TargetSearch:
    """Rule 3: where the target is, given the environment's newest deployment. When it
    succeeded it is what runs, and the rollback goes back from it; otherwise the newest RC
    that may be rolled back to is deployed again, the running one or (a double click) the
    one the earlier rollback went to."""
    if newest.status == DeploymentStatus.SUCCESS:
        return TargetSearch(excluded_candidate_id=newest.release_candidate_id)
    return TargetSearch(excluded_candidate_id=None)


def ensure_target(target: D | None) -> D:
    if target is None:
        raise errors.not_found(errors.NOTHING_TO_ROLL_BACK_TO)
    return target


def rolled_away_from(newest: Deployed, target: Deployed) -> int | None:
    """Rule 3: the RC remembered as rolled back here, the newest deployment's, unless it is
    the target itself (then the rollback goes away from nothing)."""
    if newest.release_candidate_id == target.release_candidate_id:
        return None
    return newest.release_candidate_id


def to_remember(deployments_of_candidate: Iterable[M]) -> list[M]:
    """Of the rolled-away-from RC's deployments here, those to mark rolled back: the ones a
    later rollback could otherwise go forward to."""
    return [d for d in deployments_of_candidate if is_rollback_target(d)]


def rollback_target(history: Sequence[D], bad: Collection[int] = ()) -> D | None:
    """The whole of rule 3 over a history in memory (newest first): the deployment whose RC a
    rollback deploys, or None when there is nothing to roll back to. Candidates marked bad
    (`bad`, their ids) are never gone back to."""
    if not history:
        return None
    search = target_search(history[0])
    return next(
        (d for d in history if search.matches(d) and d.release_candidate_id not in bad), None
    )
