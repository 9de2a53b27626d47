"""`workflow_run` (`requested`, `in_progress`, `completed`): Tarmac's build and deploy runs.

A run is Tarmac's when its workflow is the build workflow of a project on the repository or the
deploy workflow of one of their environments (`workflow_run.path` ends with `/<file>`, or
`workflow_id` equals a numeric workflow id); any other run (CI and the like) is ignored before
anything else is read. Then, first match wins:

1. a build: the RC whose `build_run_id` is the run (the dispatch answered with it);
2. a deployment: the one whose `workflow_run_id` is the run;
3. a deployment the run was not recorded on: Tarmac did not dispatch the run itself, or the
   dispatch's answer was lost (the dispatch then looks for the run, or waits for this, before
   it is sent again). Of that workflow's environments' active deploys and rollbacks with no
   run yet whose dispatch Tarmac has tried already (before that no run can be theirs): the
   one the run's title names (`Tarmac deployment <id>`, bot/github/run_marks.py), or, for a
   title without a mark, the newest whose RC's commit is the run's `head_sha`;
4. a build the same way: of the projects' `building` RCs with no run yet, the one of the
   version the title names (`Tarmac build <version>`; by commit among several of that
   version), or, without a mark, the newest at `head_sha`.
   The run id is stored on what 3 and 4 find, so the run's later events match by id. When 3
   or 4 finds nothing, 2 or 1 is asked again: on PostgreSQL the worker may have been recording
   the dispatch's answer (the run id) while the look-up waited for the row's lock. A run
   whose title names a deployment or a build is never taken for another one.

A build ends with `completed`: `success` makes the RC ready (and auto-deploys it), anything else
failed. A deployment follows its run: `requested`/`in_progress` → `in_progress`; `completed` →
`success`, `failure` (failure, timed_out), `canceled` (cancelled) or `error` (anything else),
with the run's URL as the GitHub status's log. A final deployment stays final, so a late
`in_progress` after `completed` changes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from gidgethub import routing, sansio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import finish_build, record_run_status
from bot.config.projects_file import ProjectsConfig
from bot.domain.statuses import ACTIVE_STATUSES, BuildStatus, DeploymentKind
from bot.github.run_marks import BUILD, DEPLOYMENT
from bot.github.runs import COMPLETED, SUCCESS, WorkflowRun, deployment_status, read_run
from bot.storage.lookup import recorded_on
from bot.storage.models import Deployment, Environment, Project, ReleaseCandidate
from bot.storage.outbox import build_dispatch_not_yet_attempted, deploy_dispatch_not_yet_attempted
from bot.storage.projects import ProjectRepositories

if TYPE_CHECKING:
    from bot.github.inbound.context import WebhookContext

log = logging.getLogger(__name__)

router = routing.Router()

RUNS_WORKFLOW = (DeploymentKind.DEPLOY, DeploymentKind.ROLLBACK)
NO_RUN = "no workflow run in the payload"


@router.register("workflow_run", action="requested")
@router.register("workflow_run", action="in_progress")
@router.register("workflow_run", action=COMPLETED)
async def on_workflow_run(event: sansio.Event, context: WebhookContext) -> None:
    run = read_run(event.data)
    reason = run_ignored_unread(run, context.repositories)
    if run is None or reason is not None:
        context.ignore(reason or NO_RUN)
        return
    projects = list(
        await context.session.scalars(
            select(Project).where(func.lower(Project.repo) == run.repo.lower())
        )
    )
    builds = [p.id for p in projects if run.runs(p.build_workflow)]
    environments = await context.session.scalars(
        select(Environment).where(Environment.project_id.in_([p.id for p in projects]))
    )
    deploys = [e.id for e in environments if run.runs(e.deploy_workflow)]
    if not builds and not deploys:
        # Another replica's start-up synced other workflows since the batch read them.
        context.ignore(f"run {run.id} is not of a Tarmac workflow")
        return
    candidate = await _build_by_run_id(context.session, run, builds)
    if candidate is not None:
        context.record(await _build_moved(context.session, candidate, run, context))
        return
    deployment = await deployment_by_run_id(context.session, run, deploys)
    if deployment is None:
        deployment = await deployment_unrecorded(context.session, run, deploys)
    if deployment is None:
        # The outbox worker may have been recording this very run on the deployment: the
        # look-up by commit waited for its lock, then found the run no longer missing.
        deployment = await deployment_by_run_id(context.session, run, deploys)
    if deployment is not None:
        context.record(await _deployment_moved(context.session, deployment, run, context))
        return
    candidate = await _build_unrecorded(context.session, run, builds)
    if candidate is None:
        # As for deployments: the worker may have been recording this very run on the build
        # (the dispatch's answer); the look-up waited for its lock, then found the run no
        # longer missing. PostgreSQL only: SQLite's writes never overlap.
        candidate = await _build_by_run_id(context.session, run, builds)
    if candidate is not None:
        context.record(await _build_moved(context.session, candidate, run, context))
        return
    context.ignore(f"run {run.id} is no Tarmac build or deployment")


def ignored_unread(
    data: dict[str, Any], repositories: ProjectRepositories, _projects: ProjectsConfig
) -> str | None:
    """Why the run is ignored before anything is read (no run, no project on its repository,
    not a Tarmac workflow); None when it must be looked up."""
    return run_ignored_unread(read_run(data), repositories)


def run_ignored_unread(run: WorkflowRun | None, repositories: ProjectRepositories) -> str | None:
    if run is None:
        return NO_RUN
    if not repositories.has_projects(run.repo):
        return f"no project on {run.repo}"
    if not any(run.runs(workflow) for workflow in repositories.workflows_of(run.repo)):
        return f"run {run.id} is not of a Tarmac workflow"
    return None


# --- builds ------------------------------------------------------------------------------


async def _build_by_run_id(
    session: AsyncSession, run: WorkflowRun, projects: list[int]
) -> ReleaseCandidate | None:
    return await recorded_on(
        session,
        ReleaseCandidate,
        ReleaseCandidate.build_run_id,
        ReleaseCandidate.project_id,
        run.id,
        projects,
    )


async def _build_unrecorded(
    session: AsyncSession, run: WorkflowRun, projects: list[int]
) -> ReleaseCandidate | None:
    """The build the run is, though its id was never recorded: by the version its title
    names, or by commit when the title names none."""
    if not projects or not run.may_be_unrecorded(BUILD):
        return None
    waiting = (
        select(ReleaseCandidate)
        .where(
            ReleaseCandidate.project_id.in_(projects),
            ReleaseCandidate.build_status == BuildStatus.BUILDING,
            ReleaseCandidate.build_run_id.is_(None),
            ~build_dispatch_not_yet_attempted(),
        )
        .order_by(ReleaseCandidate.id.desc())
        .with_for_update(of=ReleaseCandidate)
    )
    if run.mark is None:
        waiting = waiting.where(ReleaseCandidate.commit_sha == run.head_sha)
    else:
        waiting = waiting.where(ReleaseCandidate.version == run.mark.value)
    found = list(await session.scalars(waiting))
    if len(found) > 1:  # one version in several projects: the commit tells them apart
        found = [c for c in found if c.commit_sha == run.head_sha]
    candidate = found[0] if found else None
    if candidate is not None:
        log.info("run %d attached to the build of release candidate %d", run.id, candidate.id)
        candidate.build_run_id = run.id
    return candidate


async def _build_moved(
    session: AsyncSession, candidate: ReleaseCandidate, run: WorkflowRun, context: WebhookContext
) -> str:
    name = f"release candidate {candidate.version}"
    if candidate.build_status != BuildStatus.BUILDING:
        return f"{name} already {candidate.build_status}"
    if run.action != COMPLETED:
        candidate.build_run_url = run.html_url or candidate.build_run_url
        return f"{name}: build run {run.id} {run.action}"
    succeeded = run.conclusion == SUCCESS
    started = await finish_build(
        session,
        context.mirror,
        candidate,
        succeeded=succeeded,
        run_url=run.html_url,
        now=context.now,
    )
    if not succeeded:
        return f"{name}: build {run.conclusion or 'ended'}; failed"
    if not started:
        return f"{name} ready; not auto-deployed"
    return f"{name} ready; auto-deployed to {', '.join(d.environment.name for d in started)}"


# --- deployments -------------------------------------------------------------------------


async def deployment_by_run_id(
    session: AsyncSession, run: WorkflowRun, environments: list[int]
) -> Deployment | None:
    return await recorded_on(
        session,
        Deployment,
        Deployment.workflow_run_id,
        Deployment.environment_id,
        run.id,
        environments,
    )


async def deployment_unrecorded(
    session: AsyncSession, run: WorkflowRun, environments: list[int]
) -> Deployment | None:
    """The deployment the run is, though its id was never recorded: the one its title names,
    or by commit when the title names none."""
    if not environments or not run.may_be_unrecorded(DEPLOYMENT):
        return None
    waiting = (
        select(Deployment)
        .where(
            Deployment.environment_id.in_(environments),
            Deployment.status.in_(ACTIVE_STATUSES),
            Deployment.kind.in_(RUNS_WORKFLOW),
            Deployment.workflow_run_id.is_(None),
            ~deploy_dispatch_not_yet_attempted(),
        )
        .order_by(Deployment.id.desc())
        .limit(1)
        .with_for_update(of=Deployment)
    )
    if run.mark is None:
        waiting = waiting.join(
            ReleaseCandidate, ReleaseCandidate.id == Deployment.release_candidate_id
        ).where(ReleaseCandidate.commit_sha == run.head_sha)
    else:
        waiting = waiting.where(Deployment.id == int(run.mark.value))
    deployment = await session.scalar(waiting)
    if deployment is not None:
        log.info("run %d attached to deployment %d", run.id, deployment.id)
        deployment.workflow_run_id = run.id
    return deployment


async def _deployment_moved(
    session: AsyncSession, deployment: Deployment, run: WorkflowRun, context: WebhookContext
) -> str:
    context.about_deployment(deployment)
    status = deployment_status(run)
    changed = await record_run_status(
        session, context.mirror, deployment, status, run_url=run.html_url, now=context.now
    )
    name = f"deployment {deployment.id}"
    if not changed:
        return f"{name} stays {deployment.status} (run {run.id} {run.action})"
    return f"{name} {status} (run {run.id} {run.action})"
