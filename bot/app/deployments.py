"""Deployments: the steps every use case that changes an environment shares (taking the
environment's lock, recording a deployment and what it supersedes), and reading history.

The use cases themselves, with the GitHub calls they imply, are in bot/app/operations.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.clock import Clock
from bot.core.log_context import add_log_context
from bot.core.pages import Page, PageRequest
from bot.domain.statuses import (
    DeploymentKind,
    DeploymentStatus,
    cancel,
    superseded_by,
    superseded_message,
    supersedes_older,
)
from bot.storage import deployments as stored
from bot.storage.models import Approval, Deployment, Environment, ReleaseCandidate
from bot.storage.policy import approvals_of_deployments
from bot.storage.projects import find_environment


@dataclass(frozen=True)
class Locked:
    environment: Environment
    now: datetime


async def lock_environment(
    session: AsyncSession, project_name: str, environment_name: str, clock: Clock
) -> Locked:
    """The environment, locked for a decision from its history, and the time of the decision.

    The clock is read once locked: changes of one environment take turns here, so their times
    follow their ids and a deployment never ends before it started.
    """
    environment = await find_environment(session, project_name, environment_name, lock=True)
    return Locked(environment, clock())


@dataclass(frozen=True)
class NewDeployment:
    deployment: Deployment
    # The environment's older active deployments it superseded, now `canceled`: their runs
    # are to be canceled on GitHub.
    superseded: Sequence[Deployment] = ()


async def record_deployment(
    session: AsyncSession,
    environment: Environment,
    candidate: ReleaseCandidate,
    *,
    actor: str | None,
    now: datetime,
    kind: DeploymentKind = DeploymentKind.DEPLOY,
    status: DeploymentStatus = DeploymentStatus.PENDING,
    error_message: str | None = None,
    superseded_because: str | None = None,
) -> NewDeployment:
    """Insert a deployment (by default a `pending` deploy), with `from_*` set to what is
    running in the environment now, and cancel the older active deployments it supersedes
    (`superseded_by`), their `error_message` `superseded_because` (by default: "Superseded
    by deployment N").

    The caller holds the environment lock (`lock_environment`).
    """
    deployment = await stored.insert_deployment(
        session,
        environment,
        candidate,
        running=await stored.running_release_candidate(session, environment),
        kind=kind,
        status=status,
        actor=actor,
        now=now,
        error_message=error_message,
    )
    add_log_context(deployment_id=deployment.id)
    if not supersedes_older(deployment.status):
        return NewDeployment(deployment)  # no need to read what is under way
    older = superseded_by(deployment, await stored.active_deployments(session, environment))
    why = superseded_because or superseded_message(deployment)
    for superseded in older:
        cancel(superseded, why, now)
    return NewDeployment(deployment, older)


@dataclass(frozen=True)
class ReportedStatus:
    deployment: Deployment
    created: bool
    previous_status: str | None  # None when the report created the deployment
    superseded: Sequence[Deployment] = ()

    @property
    def changed(self) -> bool:
        return self.created or self.previous_status != self.deployment.status


async def list_deployments(
    session: AsyncSession, project_name: str, environment_name: str, page: PageRequest
) -> Page[Deployment]:
    """Deployments of one environment, newest first."""
    environment = await find_environment(session, project_name, environment_name)
    return await stored.deployment_page(session, environment, page)


async def approvals_given(
    session: AsyncSession, deployments: Sequence[Deployment | None]
) -> dict[int, list[Approval]]:
    """The approvals of those of `deployments` that wait or waited for approvals, by
    deployment id: one query for a whole page, none when no deployment of it needs any
    (only those can have been approved)."""
    waiting = [d.id for d in deployments if d is not None and d.approvals_required > 0]
    by_deployment: dict[int, list[Approval]] = {}
    for approval in await approvals_of_deployments(session, waiting):
        by_deployment.setdefault(approval.deployment_id, []).append(approval)
    return by_deployment


async def get_deployment(
    session: AsyncSession, project_name: str, environment_name: str, deployment_id: int
) -> Deployment:
    environment = await find_environment(session, project_name, environment_name)
    return await stored.deployment_in(session, environment, deployment_id)
