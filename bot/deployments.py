"""Deployments: what runs where, deploying an RC, reported statuses, history, timeouts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import errors
from bot.clock import Clock
from bot.freeze import ensure_not_frozen
from bot.log_context import add_log_context
from bot.models import Deployment, Environment, ReleaseCandidate
from bot.pages import Page, PageRequest
from bot.projects import ensure_accepts_deployments, find_environment
from bot.releases import find_release_candidate
from bot.statuses import (
    ACTIVE_STATUSES,
    BuildStatus,
    DeploymentKind,
    DeploymentStatus,
    apply_status,
    is_final,
    report_starts_new_deployment,
)
from bot.versions import parse_rc_version

TIMED_OUT_MESSAGE = "Deployment timed out: no final status after {minutes} minutes"


async def running_release_candidate(
    session: AsyncSession, environment: Environment
) -> ReleaseCandidate | None:
    """The running version of an environment: the RC of its newest successful deployment."""
    newest_success = await session.scalar(
        select(Deployment)
        .where(
            Deployment.environment_id == environment.id,
            Deployment.status == DeploymentStatus.SUCCESS,
        )
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    return newest_success.release_candidate if newest_success is not None else None


async def newest_deployment(session: AsyncSession, environment: Environment) -> Deployment | None:
    return await session.scalar(
        select(Deployment)
        .where(Deployment.environment_id == environment.id)
        .order_by(Deployment.id.desc())
        .limit(1)
    )


async def active_deployments(session: AsyncSession, environment: Environment) -> list[Deployment]:
    """Deployments of the environment still under way (pending, in_progress, canceling),
    newest first.

    Sorted here, not by the database: with ORDER BY id, SQLite (which keeps no statistics)
    walks the environment's whole history in id order instead of seeking the few active
    rows through the (environment, status) index.
    """
    found = await session.scalars(
        select(Deployment).where(
            Deployment.environment_id == environment.id,
            Deployment.status.in_(ACTIVE_STATUSES),
        )
    )
    return sorted(found, key=lambda deployment: deployment.id, reverse=True)


async def record_deployment(
    session: AsyncSession,
    environment: Environment,
    candidate: ReleaseCandidate,
    *,
    kind: DeploymentKind,
    status: DeploymentStatus,
    actor: str | None,
    now: datetime,
    error_message: str | None = None,
) -> Deployment:
    """Insert a deployment, with `from_*` set to what is running in the environment now.

    The caller holds the environment lock (`find_environment(lock=True)`).
    """
    running = await running_release_candidate(session, environment)
    deployment = Deployment(
        environment_id=environment.id,
        environment=environment,
        release_candidate_id=candidate.id,
        release_candidate=candidate,
        from_release_candidate_id=running.id if running is not None else None,
        from_release_candidate=running,
        kind=kind,
        status=status,
        actor=actor,
        deploy_start_at=now,
        deploy_end_at=now if is_final(status) else None,
        updated_at=now,
        error_message=error_message,
    )
    session.add(deployment)
    await session.flush()
    add_log_context(deployment_id=deployment.id)
    return deployment


def ensure_deployable(candidate: ReleaseCandidate) -> None:
    if candidate.build_status == BuildStatus.BUILDING:
        raise errors.invalid(errors.RC_STILL_BUILDING)
    if candidate.build_status == BuildStatus.FAILED:
        raise errors.invalid(errors.RC_BUILD_FAILED)


async def create_deployment(
    session: AsyncSession,
    *,
    project_name: str,
    environment_name: str,
    version: str,
    actor: str | None,
    clock: Clock,
) -> Deployment:
    """Deploy RC `version` to the environment: a new `pending` deployment."""
    environment = await find_environment(session, project_name, environment_name, lock=True)
    # Read once locked: changes of one environment take turns here, so their times follow
    # their ids and a deployment never ends before it started.
    now = clock()
    if parse_rc_version(version) is None:
        raise errors.invalid(errors.INVALID_RC_VERSION)
    ensure_accepts_deployments(environment)
    candidate = await find_release_candidate(session, environment.project, version)
    ensure_deployable(candidate)
    ensure_not_frozen(environment, now)
    return await record_deployment(
        session,
        environment,
        candidate,
        kind=DeploymentKind.DEPLOY,
        status=DeploymentStatus.PENDING,
        actor=actor,
        now=now,
    )


@dataclass(frozen=True)
class ReportedStatus:
    deployment: Deployment
    created: bool
    previous_status: str | None  # None when the report created the deployment

    @property
    def changed(self) -> bool:
        return self.created or self.previous_status != self.deployment.status


async def report_deployment_status(
    session: AsyncSession,
    *,
    project_name: str,
    environment_name: str,
    version: str,
    status: DeploymentStatus,
    actor: str | None,
    clock: Clock,
    error_message: str | None = None,
) -> ReportedStatus:
    """A status reported by a CD system: updates the newest deployment of the RC in the
    environment, or records a new one (`report_starts_new_deployment` says which).

    Freezes do not apply: a report describes what already happened.
    """
    environment = await find_environment(session, project_name, environment_name, lock=True)
    # Read once locked: changes of one environment take turns here, so their times follow
    # their ids and a deployment never ends before it started.
    now = clock()
    if parse_rc_version(version) is None:
        raise errors.invalid(errors.INVALID_RC_VERSION)
    candidate = await find_release_candidate(session, environment.project, version)
    current = await session.scalar(
        select(Deployment)
        .where(
            Deployment.environment_id == environment.id,
            Deployment.release_candidate_id == candidate.id,
        )
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    if current is None or report_starts_new_deployment(current, status):
        ensure_accepts_deployments(environment)
        created = await record_deployment(
            session,
            environment,
            candidate,
            kind=DeploymentKind.REPORTED,
            status=status,
            actor=actor,
            now=now,
            error_message=error_message,
        )
        return ReportedStatus(created, created=True, previous_status=None)
    previous = current.status
    apply_status(current, status, now)
    if error_message is not None and error_message != current.error_message:
        current.error_message = error_message
        current.updated_at = now
    await session.flush()
    return ReportedStatus(current, created=False, previous_status=previous)


async def list_deployments(
    session: AsyncSession, project_name: str, environment_name: str, page: PageRequest
) -> Page[Deployment]:
    """Deployments of one environment, newest first."""
    environment = await find_environment(session, project_name, environment_name)
    rows = list(
        await session.scalars(
            select(Deployment)
            .where(Deployment.environment_id == environment.id)
            .order_by(Deployment.id.desc())
            .offset(page.offset)
            .limit(page.per_page + 1)
        )
    )
    return Page(items=rows[: page.per_page], has_next=len(rows) > page.per_page)


async def expire_stuck_deployments(
    session: AsyncSession, environment: Environment, now: datetime
) -> list[Deployment]:
    """Active deployments older than the environment's timeout become `error`.

    The caller holds the environment lock.
    """
    cutoff = now - timedelta(minutes=environment.timeout_minutes)
    stuck = await session.scalars(
        select(Deployment).where(
            Deployment.environment_id == environment.id,
            Deployment.status.in_(ACTIVE_STATUSES),
            Deployment.deploy_start_at < cutoff,
        )
    )
    expired = []
    for deployment in stuck:
        apply_status(deployment, DeploymentStatus.ERROR, now)
        deployment.error_message = TIMED_OUT_MESSAGE.format(minutes=environment.timeout_minutes)
        expired.append(deployment)
    await session.flush()
    return expired
