"""Which deliveries need no handling: decided at intake, from the payload and the projects alone.

Most of what an installation sends concerns nothing of Tarmac's: CI runs of other workflows,
branch pushes, comments without a command, events of repositories without projects, events no
handler takes. Each handler begins with checks that read nothing but the payload and the
projects (`ignored_unread` in its module). The intake (bot/github/inbound/intake.py) asks them
here, inside its append's transaction, so as fresh as the reader's batch would be: a delivery
they all ignore is recorded at once with the outcome its handlers would store, instead of
being stored whole in the inbox (a `workflow_run` is 19 kB) for the reader to decode again.
What they do not decide goes to the inbox and its handlers, in arrival order.

Decided as of the delivery's arrival (the append's transaction reads the projects): a project
that a replica's start-up adds later does not take up a delivery that came before it, as the
reader, which reads them when it takes its batch, could have done behind a backlog.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gidgethub import sansio

from bot.config.projects_file import ProjectsConfig
from bot.github.inbound import comments, deployments, tags, workflow_jobs, workflow_runs
from bot.github.inbound.context import IGNORED, ignored_because, outcome_of
from bot.github.inbound.router import Handler, routed_handlers
from bot.storage.projects import ProjectRepositories

# A handler's first checks: why it ignores the payload, or None when it must run.
UnreadCheck = Callable[[dict[str, Any], ProjectRepositories, ProjectsConfig], str | None]

UNREAD_CHECKS: Mapping[Handler, UnreadCheck] = {
    comments.on_issue_comment: comments.ignored_unread,
    deployments.on_deployment: deployments.ignored_unread,
    tags.on_tag_created: tags.create_ignored_unread,
    tags.on_tag_pushed: tags.push_ignored_unread,
    workflow_jobs.on_workflow_job: workflow_jobs.ignored_unread,
    workflow_runs.on_workflow_run: workflow_runs.ignored_unread,
}

# In the raw body, the only way JSON spells a NUL: such a payload is the dispatcher's to refuse.
_ESCAPED_NUL = b"\\u0000"


def outcome_without_handling(
    event: sansio.Event,
    body: bytes,
    repositories: ProjectRepositories,
    projects: ProjectsConfig,
) -> str | None:
    """The outcome of a delivery that no handler would act on, as they would record it; None
    when it must be handled (from the inbox)."""
    if _ESCAPED_NUL in body or not isinstance(event.data, dict):
        return None
    handlers = routed_handlers(event)
    if not handlers:
        return IGNORED
    reasons = []
    for handler in handlers:
        check = UNREAD_CHECKS.get(handler)
        reason = check(event.data, repositories, projects) if check is not None else None
        if reason is None:
            return None
        reasons.append(ignored_because(reason))
    return outcome_of(reasons)
