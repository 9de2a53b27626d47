"""`deployment` (`created`): the GitHub Deployment that GitHub Actions made for a deploy run.

In an environment with `github_deployment: workflow`, the deploy workflow's job declares
`environment:`, so Actions makes the GitHub Deployment when the job starts and posts its
statuses; Tarmac makes none of its own and records this one's id on the Tarmac deployment
(docs/decisions.md). The event's `workflow_run` names the run. First match wins:

1. the deployment whose `workflow_run_id` is the run (the dispatch answered with it);
2. the one the run's title names (`Tarmac deployment <id>`), when the payload carries the title;
3. without it, the same rule as a `workflow_run` of an unrecorded run: of the environment's
   active deploys and rollbacks with no run yet whose dispatch Tarmac has tried, the newest
   whose RC's commit is the deployment's `sha` (the run is then recorded on it too).

Only deployments whose GitHub Deployment is Actions' are looked at: Tarmac's own (whose
creation sends this event too), `reported` deployments and other environments' are left alone.
A deployment of a run Tarmac does not know is ignored; a redelivery finds the id recorded.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from gidgethub import routing, sansio
from sqlalchemy import func, select

from bot.config.projects_file import GITHUB_DEPLOYMENT_WORKFLOW, REPO_PATTERN, ProjectsConfig
from bot.domain.versions import normalize_commit_sha
from bot.github.inbound.workflow_runs import deployment_by_run_id, deployment_unrecorded
from bot.github.payloads import github_id, text_fit_to_store
from bot.github.run_marks import run_mark
from bot.github.runs import MAX_TITLE_LENGTH, WorkflowRun
from bot.storage.models import Deployment, Environment, Project
from bot.storage.projects import ProjectRepositories

if TYPE_CHECKING:
    from bot.github.inbound.context import WebhookContext

log = logging.getLogger(__name__)

NOT_OF_A_RUN = "not a deployment of a workflow run"

router = routing.Router()


def read_actions_deployment(data: dict[str, Any]) -> tuple[int, str, WorkflowRun] | None:
    """(GitHub deployment id, its environment, its run) of a deployment Actions made."""
    deployment, workflow_run = data.get("deployment"), data.get("workflow_run")
    repository = data.get("repository")
    if not isinstance(deployment, dict) or not isinstance(workflow_run, dict):
        return None
    repo = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(repo, str) or re.fullmatch(REPO_PATTERN, repo) is None:
        return None
    made_id, run_id = github_id(deployment.get("id")), github_id(workflow_run.get("id"))
    environment = text_fit_to_store(deployment.get("environment"), 100)
    if made_id is None or run_id is None or environment is None:
        return None
    sha = deployment.get("sha")
    title = text_fit_to_store(workflow_run.get("display_title"), MAX_TITLE_LENGTH)
    run = WorkflowRun(
        action="deployment",
        id=run_id,
        repo=repo,
        path="",
        workflow_id=github_id(workflow_run.get("workflow_id")),
        head_sha=normalize_commit_sha(sha) if isinstance(sha, str) else None,
        html_url=None,
        conclusion=None,
        mark=run_mark(title) if title is not None else None,
    )
    return made_id, environment, run


def ignored_unread(
    data: dict[str, Any], repositories: ProjectRepositories, _projects: ProjectsConfig
) -> str | None:
    """Why the deployment is ignored before anything is read; None when it must be looked up."""
    return _deployment_ignored_unread(read_actions_deployment(data), repositories)


def _deployment_ignored_unread(
    read: tuple[int, str, WorkflowRun] | None, repositories: ProjectRepositories
) -> str | None:
    if read is None:
        return NOT_OF_A_RUN
    if not repositories.has_projects(read[2].repo):
        return f"no project on {read[2].repo}"
    return None


@router.register("deployment", action="created")
async def on_deployment(event: sansio.Event, context: WebhookContext) -> None:
    read = read_actions_deployment(event.data)
    reason = _deployment_ignored_unread(read, context.repositories)
    if read is None or reason is not None:
        context.ignore(reason or NOT_OF_A_RUN)
        return
    github_id, environment_name, run = read
    environments = list(
        await context.session.scalars(
            select(Environment.id)
            .join(Project, Project.id == Environment.project_id)
            .where(
                func.lower(Project.repo) == run.repo.lower(),
                Environment.name == environment_name,
                Environment.github_deployment == GITHUB_DEPLOYMENT_WORKFLOW,
                Environment.deploy_workflow.is_not(None),
            )
        )
    )
    if not environments:
        context.ignore(f"environment {environment_name} takes no GitHub deployment from runs")
        return
    deployment = await deployment_by_run_id(context.session, run, environments)
    if deployment is None:
        deployment = await deployment_unrecorded(context.session, run, environments)
    if deployment is None or not deployment.github_deployment_by_actions:
        context.ignore(f"run {run.id} is no Tarmac deployment's")
        return
    context.about_deployment(deployment)
    context.record(_adopted(deployment, github_id, run))


def _adopted(deployment: Deployment, github_id: int, run: WorkflowRun) -> str:
    name = f"deployment {deployment.id}"
    if deployment.github_deployment_id == github_id:
        return f"{name} has GitHub deployment {github_id} already"
    if deployment.github_deployment_id is not None:
        # A re-run of the job makes another one; the first stays the deployment's.
        return f"{name} keeps GitHub deployment {deployment.github_deployment_id}"
    deployment.github_deployment_id = github_id
    log.info("deployment %d: GitHub deployment %d of run %d", deployment.id, github_id, run.id)
    return f"{name}: GitHub deployment {github_id} of run {run.id}"
