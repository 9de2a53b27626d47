"""`workflow_job` (`waiting`, `in_progress`): a deploy run's job held by its GitHub environment.

A job that declares `environment:` waits while the GitHub environment's protection rules (its
required reviewers, its wait timer) hold it. When a job of a deploy run Tarmac knows (the
deployment's `workflow_run_id`) waits, the deployment is `pending` and its `waiting_for` says
what for, e.g. "approval of GitHub environment production (its protection rules)"; the job
going `in_progress` clears it and the deployment is `in_progress`, as does the deployment
moving on (canceled, timed out, its run completed). Jobs of other runs are ignored.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from gidgethub import routing, sansio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import plan_status, record_run_status
from bot.config.projects_file import REPO_PATTERN, ProjectsConfig
from bot.domain.statuses import DeploymentStatus, apply_status, is_final
from bot.github.payloads import github_id, text_fit_to_store
from bot.storage.models import Deployment, Environment, Project
from bot.storage.projects import ProjectRepositories

if TYPE_CHECKING:
    from bot.github.inbound.context import WebhookContext

router = routing.Router()

WAITING = "waiting"
IN_PROGRESS = "in_progress"
MAX_NAME_LENGTH = 200
NO_JOB = "no workflow job in the payload"


def _run_id_and_repo(data: dict[str, Any]) -> tuple[int, str] | None:
    job, repository = data.get("workflow_job"), data.get("repository")
    if not isinstance(job, dict) or not isinstance(repository, dict):
        return None
    run_id, repo = github_id(job.get("run_id")), repository.get("full_name")
    if run_id is None:
        return None
    if not isinstance(repo, str) or re.fullmatch(REPO_PATTERN, repo) is None:
        return None
    return run_id, repo


def ignored_unread(
    data: dict[str, Any], repositories: ProjectRepositories, _projects: ProjectsConfig
) -> str | None:
    """Why the job is ignored before anything is read; None when its run must be looked up."""
    return _job_ignored_unread(_run_id_and_repo(data), repositories)


def _job_ignored_unread(
    found: tuple[int, str] | None, repositories: ProjectRepositories
) -> str | None:
    if found is None:
        return NO_JOB
    if not repositories.has_projects(found[1]):
        return f"no project on {found[1]}"
    return None


def waiting_for(data: dict[str, Any]) -> str:
    """What the job waits for, from the payload: the GitHub environment its `deployment` names,
    or else the job's name."""
    deployment = data.get("deployment")
    environment = deployment.get("environment") if isinstance(deployment, dict) else None
    name = text_fit_to_store(environment, MAX_NAME_LENGTH)
    if name is not None:
        return f"approval of GitHub environment {name} (its protection rules)"
    job = text_fit_to_store(data["workflow_job"].get("name"), MAX_NAME_LENGTH)
    return f"job {job or 'of the deploy run'}: its GitHub environment's protection rules"


@router.register("workflow_job", action=WAITING)
@router.register("workflow_job", action=IN_PROGRESS)
async def on_workflow_job(event: sansio.Event, context: WebhookContext) -> None:
    found = _run_id_and_repo(event.data)
    reason = _job_ignored_unread(found, context.repositories)
    if found is None or reason is not None:
        context.ignore(reason or NO_JOB)
        return
    run_id, repo = found
    deployment = await context.session.scalar(
        select(Deployment)
        .join(Environment, Environment.id == Deployment.environment_id)
        .join(Project, Project.id == Environment.project_id)
        .where(Deployment.workflow_run_id == run_id, func.lower(Project.repo) == repo.lower())
        .limit(1)
        .with_for_update(of=Deployment)
    )
    if deployment is None:
        context.ignore(f"run {run_id} is no Tarmac deployment's")
        return
    context.about_deployment(deployment)
    context.record(await _job_moved(context.session, deployment, event.data, context))


async def _job_moved(
    session: AsyncSession, deployment: Deployment, data: dict[str, Any], context: WebhookContext
) -> str:
    name = f"deployment {deployment.id}"
    if is_final(deployment.status):
        return f"{name} stays {deployment.status} (job {data['action']})"
    mirror = context.mirror
    if data["action"] == WAITING:
        reason = waiting_for(data)
        if deployment.waiting_for == reason:
            return f"{name} still waits for {reason}"
        apply_status(deployment, DeploymentStatus.PENDING, context.now)
        deployment.waiting_for = reason
        deployment.updated_at = context.now
        await plan_status(session, mirror, deployment, context.now)
        return f"{name} pending: waits for {reason}"
    if deployment.waiting_for is None:
        return f"{name} stays {deployment.status} (job in_progress)"
    deployment.waiting_for = None
    await record_run_status(
        session, mirror, deployment, DeploymentStatus.IN_PROGRESS, run_url=None, now=context.now
    )
    return f"{name} in_progress: its job runs"
