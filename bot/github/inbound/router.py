"""GitHub webhook events in: one module per event, each with its own router, combined here.

A handler is `async def on_x(event: sansio.Event, context: WebhookContext) -> None`. It runs
inside the endpoint's one write transaction (`context.session`), next to the delivery's row: it
changes the database and enqueues outbox items, and never calls GitHub (the answer must leave
in milliseconds; the outbox worker makes the calls after the commit). It says what it did with
`context.record("release candidate v1-rc1 created")` or `context.ignore("not a tag")`; the
endpoint stores the outcome on the delivery row. (A handler that returns its outcome as a
string, as docs/github-app.md first put it, is recorded the same way.) An exception rolls
everything back, the delivery included, so GitHub sees a failed delivery that can be
redelivered once the cause is fixed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from gidgethub import routing, sansio

from bot.config.projects_file import ProjectsConfig
from bot.github.inbound import (
    authorizations,
    comments,
    deployment_protection_rule,
    deployments,
    installations,
    tags,
    workflow_jobs,
    workflow_runs,
)
from bot.github.inbound.context import DONE, WebhookContext

log = logging.getLogger(__name__)

NUL_IN_PAYLOAD = "NUL character in the payload"

Handler = Callable[..., Awaitable[Any]]

ping_router = routing.Router()


@ping_router.register("ping")
async def on_ping(event: sansio.Event, context: WebhookContext) -> None:
    # GitHub sends it when the hook is created (and from the App settings page).
    hook_id = event.data.get("hook_id")
    log.info("delivery %s: ping from hook %s", context.delivery_id, hook_id)
    context.record("pong")


def _combined_router() -> routing.Router:
    return routing.Router(
        ping_router,
        installations.router,
        authorizations.router,
        tags.router,
        workflow_runs.router,
        workflow_jobs.router,
        deployments.router,
        deployment_protection_rule.router,
        comments.router,
    )


router = _combined_router()

# The events the routers above handle (tests/test_metrics.py holds the two together): metrics
# label a delivery by its event only when it is one of these.
HANDLED_EVENTS = frozenset(
    {"ping", "installation", "installation_repositories", "github_app_authorization"}
    | {"create", "push"}
    | {"workflow_run", "workflow_job", "deployment", "deployment_protection_rule"}
    | {"issue_comment"}
)


async def dispatch(event: sansio.Event, *, context: WebhookContext) -> list[Handler]:
    """Run every handler routed to this event (in a fixed order); return the ones that ran.

    With none, the event is ignored. Afterwards `context.outcome()` is what to store.
    """
    if context.payload_may_hold_nul and _holds_nul(event.data):
        # PostgreSQL stores no NUL in text or JSON; GitHub sends none. Not for Tarmac.
        context.ignore(NUL_IN_PAYLOAD)
        return []
    handlers = routed_handlers(event)
    context.about(project=only_project_of_repository(event.data, context.projects))
    for handler in handlers:
        returned = await handler(event, context)
        if isinstance(returned, str) and returned:
            context.record(returned)
    if handlers and not context.outcomes:
        context.record(DONE)
    return handlers


# Before a batch is dispatched: what its handlers would look up one delivery at a time, read
# for all of them at once. Only the tags read ahead today; another event's reading would be
# combined here.
read_ahead = tags.read_ahead


def routed_handlers(event: sansio.Event) -> list[Handler]:
    """The handlers of the event, in the fixed order they run in."""
    return sorted(_routed(event), key=lambda h: (h.__module__, h.__qualname__))


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


def only_project_of_repository(data: Any, projects: ProjectsConfig) -> str | None:
    """The project of the event's repository when it has exactly one (a monorepo's handler
    names the project once it knows which)."""
    repository = data.get("repository") if isinstance(data, dict) else None
    repo = repository.get("full_name") if isinstance(repository, dict) else None
    if not isinstance(repo, str):
        return None
    names = [p.name for p in projects.projects if p.repo.lower() == repo.lower()]
    return names[0] if len(names) == 1 else None
