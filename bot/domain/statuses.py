"""Deployment statuses and how a reported status changes a deployment."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.storage.models import Deployment


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


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES


def is_open(status: str) -> bool:
    """Active, or `unknown`: a deployment a later report may still move."""
    return not is_final(status)


def report_starts_new_deployment(current: Deployment | None, reported: DeploymentStatus) -> bool:
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


def apply_status(deployment: Deployment, status: DeploymentStatus, now: datetime) -> bool:
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
