"""Deployment statuses and the transitions between them: what a reported status does, what a
new deployment supersedes, what may be canceled, and when a deployment has run too long.

The rules read and change plain values; the Protocols name the facts each one needs, which the
database rows have too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, TypeVar

from bot.core import errors


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    CANCELING = "canceling"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELED = "canceled"
    ERROR = "error"
    UNKNOWN = "unknown"


class DeploymentKind(StrEnum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    REPORTED = "reported"


class BuildStatus(StrEnum):
    BUILDING = "building"
    READY = "ready"
    FAILED = "failed"


ACTIVE_STATUSES = frozenset(
    {DeploymentStatus.PENDING, DeploymentStatus.IN_PROGRESS, DeploymentStatus.CANCELING}
)
FINAL_STATUSES = frozenset(
    {
        DeploymentStatus.SUCCESS,
        DeploymentStatus.FAILURE,
        DeploymentStatus.CANCELED,
        DeploymentStatus.ERROR,
    }
)

TIMED_OUT_MESSAGE = "Deployment timed out: no final status after {minutes} minutes"
SUPERSEDED_MESSAGE = "Superseded by deployment {id}"
CANCELED_MESSAGE = "Canceled by {actor}"
RUN_FAILED_MESSAGE = "The deploy workflow run did not succeed"


class HasStatus(Protocol):
    @property
    def status(self) -> str: ...


class Numbered(Protocol):
    """A deployment as superseding sees it: its id (ids follow the order deployments were
    made in) and its status."""

    @property
    def id(self) -> int: ...

    @property
    def status(self) -> str: ...


class Moving(Protocol):
    """What a status change writes."""

    status: str
    updated_at: datetime
    waiting_for: str | None
    deploy_end_at: datetime | None
    error_message: str | None


N = TypeVar("N", bound=Numbered)


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES


def is_open(status: str) -> bool:
    """Active, or `unknown`: a deployment a later report may still move."""
    return not is_final(status)


def report_starts_new_deployment(current: HasStatus | None, reported: DeploymentStatus) -> bool:
    """Whether a reported status opens a new deployment instead of updating `current`.

    `current` is the newest deployment of the reported RC in the environment. While it is open
    (active or unknown) the report updates it. Once final it is history: a report of another
    status is a new attempt (a redeploy by the reporter's CD system), while the same final
    status again is a retried report and changes nothing (see `apply_status`).
    """
    if current is None:
        return True
    if is_open(current.status):
        return False
    return current.status != reported


def apply_status(deployment: Moving, status: DeploymentStatus, now: datetime) -> bool:
    """Move `deployment` to `status`; returns whether anything changed.

    `deploy_end_at` is set when the deployment first reaches a final status.
    """
    if deployment.status == status:
        return False
    deployment.status = status
    deployment.updated_at = now
    if status != DeploymentStatus.PENDING:
        deployment.waiting_for = None  # it moved on
    if is_final(status) and deployment.deploy_end_at is None:
        deployment.deploy_end_at = now
    return True


def apply_report(
    deployment: Moving, status: DeploymentStatus, error_message: str | None, now: datetime
) -> None:
    """A report on an open deployment: its status, and its error message when it brings one."""
    apply_status(deployment, status, now)
    if error_message is not None and error_message != deployment.error_message:
        deployment.error_message = error_message
        deployment.updated_at = now


def supersedes_older(status: str) -> bool:
    """Whether a new deployment with `status` ends the environment's older active ones. One
    under way, or done, is where the environment is going; a record of an attempt that has
    already failed (a reported failure) moves nothing, so what was under way goes on."""
    return status in ACTIVE_STATUSES or status == DeploymentStatus.SUCCESS


def superseded_by(new: Numbered, active: Sequence[N]) -> list[N]:
    """Which of the environment's active deployments the `new` one cancels: every older one,
    when it supersedes at all (`supersedes_older`)."""
    if not supersedes_older(new.status):
        return []
    return [deployment for deployment in active if deployment.id < new.id]


def superseded_message(new: Numbered) -> str:
    return SUPERSEDED_MESSAGE.format(id=new.id)


def cancel(deployment: Moving, why: str, now: datetime) -> None:
    apply_status(deployment, DeploymentStatus.CANCELED, now)
    deployment.error_message = why


def canceled_by(actor: str | None) -> str:
    return CANCELED_MESSAGE.format(actor=actor or "an API client")


def cancel_changes(deployment: HasStatus) -> bool:
    """Whether canceling `deployment` changes it. One not ended is canceled; a canceled one
    again changes nothing (a retried cancel); one that ended otherwise (success, failure,
    error) is history and stays so: refused."""
    if deployment.status == DeploymentStatus.CANCELED:
        return False
    if is_final(deployment.status):
        raise errors.conflict(errors.DEPLOYMENT_ALREADY_ENDED)
    return True


def ensure_something_to_cancel(active: Sequence[object]) -> None:
    if not active:
        raise errors.conflict(errors.NOTHING_TO_CANCEL)


def stuck_before(now: datetime, timeout_minutes: int) -> datetime:
    """An active deployment that started before this has run out of time."""
    return now - timedelta(minutes=timeout_minutes)


def expire(deployment: Moving, timeout_minutes: int, now: datetime) -> None:
    """A deployment with no final status after its environment's timeout ends in `error`."""
    apply_status(deployment, DeploymentStatus.ERROR, now)
    deployment.error_message = TIMED_OUT_MESSAGE.format(minutes=timeout_minutes)


class FollowingRun(Protocol):
    @property
    def status(self) -> str: ...

    @property
    def waiting_for(self) -> str | None: ...


def run_status_applies(deployment: FollowingRun, run_status: DeploymentStatus) -> bool:
    """Whether a deploy workflow run's status moves its deployment. A final deployment stays
    as it is whatever its run says later (a canceled one stays canceled); one whose job waits
    for approval stays pending until the job runs, unless the run ends."""
    if is_final(deployment.status):
        return False
    return deployment.waiting_for is None or is_final(run_status)


def follow_run(deployment: Moving, run_status: DeploymentStatus, now: datetime) -> bool:
    """Move the deployment as its run moved (`run_status_applies`); whether it changed."""
    if not run_status_applies(deployment, run_status):
        return False
    if not apply_status(deployment, run_status, now):
        return False
    if run_status == DeploymentStatus.ERROR and deployment.error_message is None:
        deployment.error_message = RUN_FAILED_MESSAGE
    return True
