"""GitHub webhook events in: one module per event, each with its own router, combined here.

A handler is `async def on_x(event: sansio.Event, *, session: AsyncSession, context:
WebhookContext) -> None`. It runs inside the endpoint's one write transaction, next to the
delivery's row: it changes the database and enqueues outbox items, and never calls GitHub (the
answer must leave in milliseconds; the outbox worker makes the calls after the commit). It
says what it did with `context.record("release candidate v1-rc1 created")` or
`context.ignore("not a tag")`; the endpoint stores the outcome on the delivery row. (A
handler that returns its outcome as a string, as docs/github-app.md first put it, is recorded
the same way.) An exception rolls everything back, the delivery included, so GitHub sees a
failed delivery that can be redelivered once the cause is fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gidgethub import routing, sansio
from sqlalchemy.ext.asyncio import AsyncSession

from bot.log_context import add_log_context
from bot.projects import ProjectRepositories
from bot.projects_file import ProjectsConfig

if TYPE_CHECKING:
    from bot.models import Deployment

log = logging.getLogger(__name__)

IGNORED = "ignored"
DONE = "done"
NUL_IN_PAYLOAD = "NUL character in the payload"
# webhook_deliveries.outcome is VARCHAR(200).
MAX_OUTCOME_LENGTH = 200

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class WebhookContext:
    """What a handler needs besides the event and the session; one per delivery."""

    now: datetime
    projects: ProjectsConfig
    delivery_id: str
    # Which repositories have projects and which workflows Tarmac runs there, read in the
    # delivery's transaction: an event of any other repository is ignored without a query.
    repositories: ProjectRepositories
    # False when the raw body shows there is no NUL in the payload (see `dispatch`).
    payload_may_hold_nul: bool = True
    outcomes: list[str] = field(default_factory=list)

    def record(self, outcome: str) -> None:
        """What the handler did, in a few words (stored on the delivery row)."""
        self.outcomes.append(outcome)

    def about(
        self,
        *,
        project: str | None = None,
        environment: str | None = None,
        deployment_id: int | None = None,
        release_candidate: str | None = None,
    ) -> None:
        """What the delivery turned out to concern: every log line from here on names it."""
        add_log_context(
            project=project,
            environment=environment,
            deployment_id=deployment_id,
            release_candidate=release_candidate,
        )

    def about_deployment(self, deployment: Deployment) -> None:
        """The delivery concerns this deployment (its project, environment and candidate)."""
        environment = deployment.environment
        self.about(
            project=environment.project.name,
            environment=environment.name,
            deployment_id=deployment.id,
            release_candidate=deployment.release_candidate.version,
        )

    def concerns_a_project(self, repo: str) -> bool:
        """Whether `repo` has a project in the database (removed ones included)."""
        return self.repositories.has_projects(repo)

    def runs_a_tarmac_workflow(self, repo: str, runs: Callable[[str], bool]) -> bool:
        """Whether `runs` (a workflow run's test, see workflow_runs.WorkflowRun.runs) holds for
        a build or deploy workflow of a project on `repo`."""
        return any(runs(workflow) for workflow in self.repositories.workflows_of(repo))

    def ignore(self, reason: str) -> None:
        """The event is not for Tarmac, and why: `ignored: <reason>`."""
        self.outcomes.append(f"{IGNORED}: {reason}")

    @property
    def ignored(self) -> bool:
        """No handler did anything: every outcome (if any) is an `ignore`."""
        return all(o == IGNORED or o.startswith(IGNORED + ":") for o in self.outcomes)

    def outcome(self) -> str:
        text = "; ".join(self.outcomes) or IGNORED
        if len(text) > MAX_OUTCOME_LENGTH:
            text = text[: MAX_OUTCOME_LENGTH - 1] + "…"
        return text


ping_router = routing.Router()


@ping_router.register("ping")
async def on_ping(event: sansio.Event, *, session: AsyncSession, context: WebhookContext) -> None:
    # GitHub sends it when the hook is created (and from the App settings page).
    hook_id = event.data.get("hook_id")
    log.info("delivery %s: ping from hook %s", context.delivery_id, hook_id)
    context.record("pong")


def _combined_router() -> routing.Router:
    # Imported here, after WebhookContext exists: the event modules may import it from this
    # package at run time whatever order the imports happen in. One import and one line per
    # event module.
    from bot.github.events.comments import router as comments
    from bot.github.events.deployments import router as deployments
    from bot.github.events.installations import router as installations
    from bot.github.events.tags import router as tags
    from bot.github.events.workflow_jobs import router as workflow_jobs
    from bot.github.events.workflow_runs import router as workflow_runs

    return routing.Router(
        ping_router,
        installations,
        tags,
        workflow_runs,
        workflow_jobs,
        deployments,
        comments,
    )


router = _combined_router()

# The events the routers above handle (tests/test_metrics.py holds the two together): metrics
# label a delivery by its event only when it is one of these.
HANDLED_EVENTS = frozenset(
    {"ping", "installation", "installation_repositories", "create", "push"}
    | {"workflow_run", "workflow_job", "deployment", "issue_comment"}
)


async def dispatch(
    event: sansio.Event, *, session: AsyncSession, context: WebhookContext
) -> list[Handler]:
    """Run every handler routed to this event (in a fixed order); return the ones that ran.

    With none, the event is ignored. Afterwards `context.outcome()` is what to store.
    """
    if context.payload_may_hold_nul and _holds_nul(event.data):
        # PostgreSQL stores no NUL in text or JSON; GitHub sends none. Not for Tarmac.
        context.ignore(NUL_IN_PAYLOAD)
        return []
    handlers: list[Handler] = sorted(_routed(event), key=lambda h: (h.__module__, h.__qualname__))
    context.about(project=_only_project_of_repository(event.data, context.projects))
    for handler in handlers:
        returned = await handler(event, session=session, context=context)
        if isinstance(returned, str) and returned:
            context.record(returned)
    if handlers and not context.outcomes:
        context.record(DONE)
    return handlers


def _holds_nul(data: Any) -> bool:
    """Whether a NUL character stands in any key or string of the payload (without recursion:
    a payload may nest deeply)."""
    pending = [data]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return True
        elif isinstance(value, dict):
            pending.extend(value.keys())
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return False


def _routed(event: sansio.Event) -> frozenset[Handler]:
    """The handlers for the event. gidgethub looks the action up in a dict, so an action that
    is a list or an object (a forged payload) would raise: such an event is routed as if it had
    no action, to the handlers registered without one."""
    action = event.data.get("action")
    if action is None or isinstance(action, str | int | float | bool):
        return router.fetch(event)
    without_action = {k: v for k, v in event.data.items() if k != "action"}
    return router.fetch(
        sansio.Event(without_action, event=event.event, delivery_id=event.delivery_id)
    )


def _only_project_of_repository(data: Any, projects: ProjectsConfig) -> str | None:
    """The project of the event's repository when it has exactly one (a monorepo's handler
    names the project once it knows which)."""
    repository = data.get("repository") if isinstance(data, dict) else None
    repo = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(repo, str):
        return None
    names = [p.name for p in projects.projects if p.repo.lower() == repo.lower()]
    return names[0] if len(names) == 1 else None
