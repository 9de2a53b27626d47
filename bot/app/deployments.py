"""Deployments: what runs where, deploying an RC, reported statuses, history, timeouts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.releases import find_release_candidate
from bot.core import errors
from bot.core.clock import Clock
from bot.core.log_context import add_log_context
from bot.core.pages import Page, PageRequest
from bot.domain.freeze import ensure_not_frozen
from bot.domain.statuses import (
    ACTIVE_STATUSES,
    BuildStatus,
    DeploymentKind,
    DeploymentStatus,
    apply_status,
    is_final,
    report_starts_new_deployment,
)
from bot.domain.versions import parse_rc_version
from bot.storage.models import Deployment, Environment, ReleaseCandidate
from bot.storage.projects import ensure_accepts_deployments, find_environment

TIMED_OUT_MESSAGE = "Deployment timed out: no final status after {minutes} minutes"
SUPERSEDED_MESSAGE = "Superseded by deployment {id}"
CANCELED_MESSAGE = "Canceled by {actor}"


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


@dataclass(frozen=True)
class NewDeployment:
    deployment: Deployment
    # The environment's older active deployments it superseded, now `canceled`: their runs
    # are to be canceled on GitHub.
    superseded: Sequence[Deployment] = ()


def supersedes_older(deployment: Deployment) -> bool:
    """Whether a new deployment ends the environment's older active ones. One under way, or
    done, is where the environment is going; a record of an attempt that has already failed
    (a reported failure) moves nothing, so what was under way goes on."""
    return deployment.status in ACTIVE_STATUSES or deployment.status == DeploymentStatus.SUCCESS


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
    superseded_because: str | None = None,
) -> NewDeployment:
    """Insert a deployment, with `from_*` set to what is running in the environment now, and
    cancel the older active deployments it supersedes (`supersedes_older`), their
    `error_message` `superseded_because` (by default: "Superseded by deployment N").

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
    if not supersedes_older(deployment):
        return NewDeployment(deployment)
    older = [d for d in await active_deployments(session, environment) if d.id < deployment.id]
    why = superseded_because or SUPERSEDED_MESSAGE.format(id=deployment.id)
    for superseded in older:
        cancel(superseded, why, now)
    return NewDeployment(deployment, older)


def cancel(deployment: Deployment, why: str, now: datetime) -> None:
    apply_status(deployment, DeploymentStatus.CANCELED, now)
    deployment.error_message = why


def canceled_by(actor: str | None) -> str:
    return CANCELED_MESSAGE.format(actor=actor or "an API client")


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
) -> NewDeployment:
    """Deploy RC `version` to the environment: a new `pending` deployment, which supersedes
    the environment's older active ones."""
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
    superseded: Sequence[Deployment] = ()

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
        new = await record_deployment(
            session,
            environment,
            candidate,
            kind=DeploymentKind.REPORTED,
            status=status,
            actor=actor,
            now=now,
            error_message=error_message,
        )
        return ReportedStatus(
            new.deployment, created=True, previous_status=None, superseded=new.superseded
        )
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


async def get_deployment(
    session: AsyncSession, project_name: str, environment_name: str, deployment_id: int
) -> Deployment:
    environment = await find_environment(session, project_name, environment_name)
    return await _deployment_of(session, environment, deployment_id)


async def _deployment_of(
    session: AsyncSession, environment: Environment, deployment_id: int
) -> Deployment:
    found = await session.scalar(
        select(Deployment).where(
            Deployment.id == deployment_id, Deployment.environment_id == environment.id
        )
    )
    if found is None:
        raise errors.not_found(errors.DEPLOYMENT_NOT_FOUND)
    return found


@dataclass(frozen=True)
class Canceled:
    deployment: Deployment
    changed: bool  # False: it was canceled already (a retried cancel)


async def cancel_deployment(
    session: AsyncSession,
    *,
    project_name: str,
    environment_name: str,
    deployment_id: int,
    actor: str | None,
    clock: Clock,
) -> Canceled:
    """Cancel one deployment that has not ended. Canceling a canceled one again changes
    nothing; one that ended otherwise (success, failure, error) is history and stays so."""
    environment = await find_environment(session, project_name, environment_name, lock=True)
    now = clock()  # once locked, as in create_deployment
    deployment = await _deployment_of(session, environment, deployment_id)
    if deployment.status == DeploymentStatus.CANCELED:
        return Canceled(deployment, changed=False)
    if is_final(deployment.status):
        raise errors.conflict(errors.DEPLOYMENT_ALREADY_ENDED)
    cancel(deployment, canceled_by(actor), now)
    await session.flush()
    return Canceled(deployment, changed=True)


async def cancel_active_deployments(
    session: AsyncSession,
    *,
    project_name: str,
    environment_name: str,
    actor: str | None,
    clock: Clock,
) -> list[Deployment]:
    """Cancel every deployment of the environment under way (`/cancel <environment>`)."""
    environment = await find_environment(session, project_name, environment_name, lock=True)
    now = clock()  # once locked, as in create_deployment
    active = await active_deployments(session, environment)
    if not active:
        raise errors.conflict(errors.NOTHING_TO_CANCEL)
    for deployment in active:
        cancel(deployment, canceled_by(actor), now)
    await session.flush()
    return active


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
