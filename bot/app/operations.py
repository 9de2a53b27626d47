"""What a person, a pipeline or a GitHub event asks Tarmac to do: the domain rule, then the
GitHub calls its change implies, written to the outbox in the same transaction.

Every adapter (REST routes, webhook handlers, PR commands, the timeout sweeper) goes through
these functions, so no path can change a deployment without mirroring it on GitHub.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import deployments, releases, rollback
from bot.config.projects_file import GITHUB_DEPLOYMENT_WORKFLOW
from bot.core import errors
from bot.core.clock import Clock
from bot.domain.freeze import current_freeze, freeze_environment, unfreeze_environment
from bot.domain.statuses import (
    BuildStatus,
    DeploymentKind,
    DeploymentStatus,
    apply_status,
    is_final,
)
from bot.storage.models import Deployment, Environment, Project, ReleaseCandidate
from bot.storage.outbox import deployment_key, enqueue, release_candidate_key
from bot.storage.projects import find_environment, find_project

AUTO_DEPLOY_ACTOR = "tarmac (auto-deploy)"
MAX_DESCRIPTION = 140
BUILD_RUN_FAILED = "The build workflow run did not succeed"
MAX_BUILD_ERROR_LENGTH = 2000

# GitHub deployment states for Tarmac statuses; `unknown` posts nothing.
GITHUB_STATES = {
    DeploymentStatus.PENDING: "pending",
    DeploymentStatus.IN_PROGRESS: "in_progress",
    DeploymentStatus.CANCELING: "in_progress",
    DeploymentStatus.SUCCESS: "success",
    DeploymentStatus.FAILURE: "failure",
    DeploymentStatus.CANCELED: "inactive",
    DeploymentStatus.ERROR: "error",
}


@dataclass(frozen=True)
class Mirror:
    """Whether changes are mirrored to GitHub: only when a GitHub App is configured."""

    enabled: bool


# --- what the outbox is told ------------------------------------------------------------


def status_description(deployment: Deployment) -> str:
    verb = {
        DeploymentKind.DEPLOY: "Deploy",
        DeploymentKind.ROLLBACK: "Rollback",
        DeploymentKind.REPORTED: "Reported deploy",
    }.get(DeploymentKind(deployment.kind), "Deploy")
    text = f"{verb} of {deployment.release_candidate.version}: {deployment.status}"
    if deployment.actor:
        text += f" (by {deployment.actor})"
    if deployment.error_message and deployment.status in (
        DeploymentStatus.FAILURE,
        DeploymentStatus.ERROR,
    ):
        text += f" - {deployment.error_message}"
    if len(text) > MAX_DESCRIPTION:
        text = text[: MAX_DESCRIPTION - 1] + "…"
    return text


async def plan_new_deployment(
    session: AsyncSession, mirror: Mirror, deployment: Deployment, now: datetime
) -> None:
    """A GitHub Deployment for it, the deploy workflow for deploys and rollbacks, and its
    first status; all under the deployment's ordering key, so they reach GitHub in order.

    When the environment's deploy workflow makes the GitHub Deployment (`github_deployment:
    workflow`), only the workflow is dispatched: the `deployment` event brings its id."""
    environment = deployment.environment
    project = environment.project
    runs_workflow = deployment.kind in (DeploymentKind.DEPLOY, DeploymentKind.ROLLBACK)
    deployment.github_deployment_by_actions = (
        runs_workflow
        and environment.deploy_workflow is not None
        and environment.github_deployment == GITHUB_DEPLOYMENT_WORKFLOW
    )
    if not mirror.enabled:
        return
    if not deployment.github_deployment_by_actions:
        await enqueue(
            session,
            action="create_github_deployment",
            ordering_key=deployment_key(deployment.id),
            repo=project.repo,
            deployment_id=deployment.id,
            now=now,
        )
    if runs_workflow and environment.deploy_workflow is not None:
        await enqueue(
            session,
            action="dispatch_deploy_workflow",
            ordering_key=deployment_key(deployment.id),
            repo=project.repo,
            deployment_id=deployment.id,
            now=now,
        )
    await plan_status(session, mirror, deployment, now)


async def plan_status(
    session: AsyncSession, mirror: Mirror, deployment: Deployment, now: datetime
) -> None:
    """The GitHub deployment status for the deployment's status now; none for a GitHub
    Deployment that Actions made, whose statuses Actions alone posts."""
    if not mirror.enabled or deployment.github_deployment_by_actions:
        return
    state = GITHUB_STATES.get(DeploymentStatus(deployment.status))
    if state is None:
        return
    environment = deployment.environment
    await enqueue(
        session,
        action="post_deployment_status",
        ordering_key=deployment_key(deployment.id),
        repo=environment.project.repo,
        deployment_id=deployment.id,
        payload={
            "state": state,
            "description": status_description(deployment),
            "environment_url": environment.url,
        },
        now=now,
    )


async def plan_cancel_run(
    session: AsyncSession, mirror: Mirror, deployment: Deployment, now: datetime
) -> None:
    if not mirror.enabled:
        return
    await enqueue(
        session,
        action="cancel_workflow_run",
        ordering_key=deployment_key(deployment.id),
        repo=deployment.environment.project.repo,
        deployment_id=deployment.id,
        now=now,
    )


async def plan_canceled(
    session: AsyncSession, mirror: Mirror, canceled: Sequence[Deployment], now: datetime
) -> None:
    """Deployments just canceled (by a rollback, a newer deployment or a person): their runs
    canceled on GitHub, their GitHub deployments shown inactive."""
    for deployment in canceled:
        await plan_cancel_run(session, mirror, deployment, now)
        await plan_status(session, mirror, deployment, now)


async def plan_build(
    session: AsyncSession,
    mirror: Mirror,
    candidate: ReleaseCandidate,
    ref: str | None,
    now: datetime,
) -> None:
    """Dispatch the project's build workflow for a `building` RC (ref None: default branch)."""
    if not mirror.enabled:
        return
    await enqueue(
        session,
        action="dispatch_build_workflow",
        ordering_key=release_candidate_key(candidate.id),
        repo=candidate.repo,
        release_candidate_id=candidate.id,
        payload={"ref": ref},
        now=now,
    )


# --- operations -------------------------------------------------------------------------


async def deploy(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    environment_name: str,
    version: str,
    actor: str | None,
    clock: Clock,
) -> Deployment:
    """An explicit deploy, superseding what was under way; it also resumes auto-deploy paused
    by a rollback."""
    new = await deployments.create_deployment(
        session,
        project_name=project_name,
        environment_name=environment_name,
        version=version,
        actor=actor,
        clock=clock,
    )
    deployment = new.deployment
    deployment.environment.auto_deploy_paused_at = None
    await plan_canceled(session, mirror, new.superseded, deployment.updated_at)
    await plan_new_deployment(session, mirror, deployment, deployment.updated_at)
    return deployment


async def report_status(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    environment_name: str,
    version: str,
    status: DeploymentStatus,
    actor: str | None,
    clock: Clock,
    error_message: str | None = None,
) -> deployments.ReportedStatus:
    """A status from a CD system: recorded and mirrored; it never dispatches a workflow."""
    reported = await deployments.report_deployment_status(
        session,
        project_name=project_name,
        environment_name=environment_name,
        version=version,
        status=status,
        actor=actor,
        clock=clock,
        error_message=error_message,
    )
    # A new or changed deployment was updated at the time the rule read, under the lock.
    now = reported.deployment.updated_at
    await plan_canceled(session, mirror, reported.superseded, now)
    if reported.created:
        await plan_new_deployment(session, mirror, reported.deployment, now)
    elif reported.changed:
        await plan_status(session, mirror, reported.deployment, now)
    return reported


async def roll_back(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    environment_name: str,
    actor: str | None,
    force: bool,
    clock: Clock,
) -> rollback.Rollback:
    """The rollback rule, then: superseded runs canceled on GitHub, their deployments shown
    inactive, auto-deploy paused for the environment, and the rollback deployed."""
    done = await rollback.roll_back(
        session,
        project_name=project_name,
        environment_name=environment_name,
        actor=actor,
        force=force,
        clock=clock,
    )
    now = done.deployment.updated_at
    done.deployment.environment.auto_deploy_paused_at = now
    await plan_canceled(session, mirror, done.canceled, now)
    await plan_new_deployment(session, mirror, done.deployment, now)
    return done


async def cancel(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    environment_name: str,
    deployment_id: int,
    actor: str | None,
    clock: Clock,
) -> Deployment:
    """Cancel one deployment (its run too); a retried cancel changes nothing."""
    canceled = await deployments.cancel_deployment(
        session,
        project_name=project_name,
        environment_name=environment_name,
        deployment_id=deployment_id,
        actor=actor,
        clock=clock,
    )
    if canceled.changed:
        deployment = canceled.deployment
        await plan_canceled(session, mirror, [deployment], deployment.updated_at)
    return canceled.deployment


async def cancel_environment(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    environment_name: str,
    actor: str | None,
    clock: Clock,
) -> list[Deployment]:
    """Cancel every deployment of the environment under way, with their runs."""
    canceled = await deployments.cancel_active_deployments(
        session,
        project_name=project_name,
        environment_name=environment_name,
        actor=actor,
        clock=clock,
    )
    await plan_canceled(session, mirror, canceled, canceled[0].updated_at)
    return canceled


async def create_release_candidate(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    version: str,
    repo: str,
    commit: str,
    build: bool,
    now: datetime,
) -> releases.CreatedCandidate:
    """An RC through the API. With `build`, the build workflow runs on the default branch:
    only with a GitHub App, since nothing else would ever end the build."""
    project = await find_project(session, project_name)
    if build and not mirror.enabled and project.build_workflow is not None:
        raise errors.invalid(errors.BUILD_NEEDS_GITHUB_APP)
    created = await releases.create_release_candidate(
        session,
        project,
        version=version,
        repo=repo,
        commit=commit,
        build=build,
        now=now,
    )
    if created.created and build:
        await plan_build(session, mirror, created.candidate, None, now)
    return created


async def create_candidate_from_tag(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project: Project,
    tag: str,
    version: str,
    commit: str,
    now: datetime,
) -> releases.CreatedCandidate:
    """An RC from a git tag (a tag `push`, or a `create` once its commit is known).

    With a build workflow the RC is `building` and the build runs on the tag; without, it is
    `ready` and auto-deployed. The same RC at the same commit again (the tag's other event, a
    redelivery) is found and nothing more happens.
    """
    build = project.build_workflow is not None
    created = await releases.create_release_candidate(
        session,
        project,
        version=version,
        repo=project.repo,
        commit=commit,
        build=build,
        now=now,
        tag=tag,
    )
    if not created.created:
        return created
    if build:
        await plan_build(session, mirror, created.candidate, tag, now)
    else:
        await auto_deploy(session, mirror, created.candidate, now)
    return created


async def record_run_status(
    session: AsyncSession,
    mirror: Mirror,
    deployment: Deployment,
    status: DeploymentStatus,
    *,
    run_url: str | None,
    now: datetime,
) -> bool:
    """A deploy workflow run moved: the deployment follows unless it is already final (a
    canceled deployment stays canceled whatever its run says later)."""
    if run_url is not None:
        deployment.workflow_run_url = run_url
    if is_final(deployment.status):
        return False
    if deployment.waiting_for is not None and not is_final(status):
        return False  # its job waits for approval: it stays pending until the job runs
    if not apply_status(deployment, status, now):
        return False
    if status == DeploymentStatus.ERROR and deployment.error_message is None:
        deployment.error_message = "The deploy workflow run did not succeed"
    await plan_status(session, mirror, deployment, now)
    return True


async def finish_build(
    session: AsyncSession,
    mirror: Mirror,
    candidate: ReleaseCandidate,
    *,
    succeeded: bool,
    run_url: str | None,
    now: datetime,
    error: str | None = None,
) -> list[Deployment]:
    """The build workflow finished: the RC is ready (and auto-deployed) or failed, with
    `error` saying why (by default: the run did not succeed)."""
    if candidate.build_status != BuildStatus.BUILDING:
        return []
    candidate.build_run_url = run_url or candidate.build_run_url
    if not succeeded:
        candidate.build_status = BuildStatus.FAILED
        candidate.build_error = (error or BUILD_RUN_FAILED)[:MAX_BUILD_ERROR_LENGTH]
        return []
    candidate.build_status = BuildStatus.READY
    return await auto_deploy(session, mirror, candidate, now)


# Built once: it runs for every new RC, and building it costs more than running it.
_AUTO_DEPLOY_ENVIRONMENTS = (
    select(Environment)
    .where(
        Environment.project_id == bindparam("project_id"),
        Environment.auto_deploy.is_(True),
        Environment.removed_at.is_(None),
        Environment.auto_deploy_paused_at.is_(None),
    )
    .order_by(Environment.id)
    .with_for_update(of=Environment)
)


async def auto_deploy(
    session: AsyncSession, mirror: Mirror, candidate: ReleaseCandidate, now: datetime
) -> list[Deployment]:
    """Deploy a ready RC to every environment of its project that asks for it, unless the
    environment is frozen, removed, or paused by a rollback since."""
    environments = await session.scalars(
        _AUTO_DEPLOY_ENVIRONMENTS, {"project_id": candidate.project_id}
    )
    started = []
    for environment in environments:
        if current_freeze(environment, now) is not None:
            continue
        new = await deployments.record_deployment(
            session,
            environment,
            candidate,
            kind=DeploymentKind.DEPLOY,
            status=DeploymentStatus.PENDING,
            actor=AUTO_DEPLOY_ACTOR,
            now=now,
        )
        await plan_canceled(session, mirror, new.superseded, now)
        await plan_new_deployment(session, mirror, new.deployment, now)
        started.append(new.deployment)
    return started


async def expire_stuck(
    session: AsyncSession, mirror: Mirror, environment: Environment, now: datetime
) -> list[Deployment]:
    expired = await deployments.expire_stuck_deployments(session, environment, now)
    for deployment in expired:
        await plan_status(session, mirror, deployment, now)
    return expired


# --- freezes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FreezeChange:
    """An environment frozen or unfrozen; `now` is when (read once it was locked)."""

    environment: Environment
    was_frozen: bool  # a freeze was in effect before the change
    now: datetime


async def freeze(
    session: AsyncSession,
    *,
    project_name: str,
    environment_name: str,
    actor: str | None,
    reason: str | None,
    until: datetime | None,
    clock: Clock,
) -> FreezeChange:
    """Freeze an environment, or change a freeze's reason or end: deploys are refused until
    it is unfrozen (or `until` passes), a rollback needs force. Nothing shows on GitHub."""
    environment = await find_environment(session, project_name, environment_name, lock=True)
    now = clock()
    was_frozen = current_freeze(environment, now) is not None
    freeze_environment(environment, reason=reason, by=actor, until=until, now=now)
    return FreezeChange(environment, was_frozen, now)


async def unfreeze(
    session: AsyncSession, *, project_name: str, environment_name: str, clock: Clock
) -> FreezeChange:
    """End an environment's freeze (one whose `until` passed already is cleared too)."""
    environment = await find_environment(session, project_name, environment_name, lock=True)
    now = clock()
    was_frozen = current_freeze(environment, now) is not None
    unfreeze_environment(environment)
    return FreezeChange(environment, was_frozen, now)
