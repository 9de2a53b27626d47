"""A workflow run as Tarmac reads it from GitHub's JSON, whether a `workflow_run` webhook or a
REST answer (the catch-up's look at a silent run): checked field by field, since a forged
payload may hold anything, and what its status means for a deployment."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from bot.config.projects_file import REPO_PATTERN
from bot.domain.statuses import DeploymentStatus
from bot.domain.versions import normalize_commit_sha
from bot.github.payloads import github_id, text_fit_to_store
from bot.github.run_marks import RunMark, run_mark

COMPLETED = "completed"
SUCCESS = "success"
MAX_URL_LENGTH = 2000
MAX_CONCLUSION_LENGTH = 50
MAX_TITLE_LENGTH = 1000

# A completed deploy run's conclusion -> the deployment's status; anything else is `error`.
CONCLUSIONS = {
    "success": DeploymentStatus.SUCCESS,
    "failure": DeploymentStatus.FAILURE,
    "timed_out": DeploymentStatus.FAILURE,
    "cancelled": DeploymentStatus.CANCELED,
}


@dataclass(frozen=True)
class WorkflowRun:
    action: str
    id: int
    repo: str
    path: str
    workflow_id: int | None
    head_sha: str | None
    html_url: str | None
    conclusion: str | None
    mark: RunMark | None = None  # what its title says it is

    def may_be_unrecorded(self, kind: str) -> bool:
        """Whether the run may be a `kind` (build or deployment) it was never recorded on: its
        title names that kind, or names none and the run has a commit to match by."""
        if self.mark is not None:
            return self.mark.kind == kind
        return self.head_sha is not None

    def runs(self, workflow: str | None) -> bool:
        """Whether this is a run of `workflow` (a file name such as deploy.yml, or an id)."""
        if not workflow:
            return False
        if workflow.isdigit():
            return self.workflow_id == int(workflow)
        path = self.path.split("@", 1)[0]  # a workflow path may carry `@ref`
        return path == workflow or path.endswith("/" + workflow)


def deployment_status(run: WorkflowRun) -> DeploymentStatus:
    if run.action != COMPLETED:
        return DeploymentStatus.IN_PROGRESS
    return CONCLUSIONS.get(run.conclusion or "", DeploymentStatus.ERROR)


def read_run(data: dict[str, Any]) -> WorkflowRun | None:
    action = data.get("action")
    workflow_run = data.get("workflow_run")
    repository = data.get("repository")
    if not isinstance(workflow_run, dict) or not isinstance(repository, dict):
        return None
    run_id = github_id(workflow_run.get("id"))
    repo = repository.get("full_name")
    path = workflow_run.get("path")
    if run_id is None:
        return None
    if not isinstance(repo, str) or re.fullmatch(REPO_PATTERN, repo) is None:
        return None
    if not isinstance(action, str):
        return None
    head_sha = workflow_run.get("head_sha")
    html_url = workflow_run.get("html_url")
    conclusion = workflow_run.get("conclusion")
    workflow_id = workflow_run.get("workflow_id")
    title = text_fit_to_store(workflow_run.get("display_title"), MAX_TITLE_LENGTH)
    return WorkflowRun(
        action=action,
        id=run_id,
        repo=repo,
        path=path if isinstance(path, str) else "",
        workflow_id=workflow_id if _is_int(workflow_id) else None,
        head_sha=normalize_commit_sha(head_sha) if isinstance(head_sha, str) else None,
        html_url=text_fit_to_store(html_url, MAX_URL_LENGTH),
        conclusion=text_fit_to_store(conclusion, MAX_CONCLUSION_LENGTH),
        mark=run_mark(title) if title is not None else None,
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
