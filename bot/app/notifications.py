"""Notifications: one outbox item per receiver that hears of a transition, written in the
transition's own transaction (so exactly one per transition and receiver, whatever crashes).

The receivers are the project's and, for an event about an environment, that environment's
(the projects file, synced into `projects.notifications` and `environments.notifications`).
Each item holds what the message says, as it was at the transition, and a delivery id that
stays the same through every retry; bot/notify/ renders and sends it. Secrets are not here:
only the names of the environment variables that hold them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain import notifications as events
from bot.domain.calendar import Edge, Span
from bot.domain.changes import PathFilter
from bot.domain.freeze import FreezeFacts, current_freeze
from bot.domain.statuses import BuildStatus
from bot.storage.change_reports import find_report, report_of
from bot.storage.models import Deployment, Environment, Project, ReleaseCandidate
from bot.storage.outbox import Action, enqueue, receiver_key

# How long an error message may be in a message (the rest is in Tarmac's API).
MAX_ERROR = 500


async def plan_notification(
    session: AsyncSession,
    event: str,
    *,
    project: Project,
    environment: Environment | None,
    now: datetime,
    facts: dict[str, Any],
    happened_at: datetime | None = None,
) -> int:
    """One outbox item per receiver of `project` (and of `environment`) that hears of
    `event`, planned at `now` about what happened at `happened_at` (default `now`); returns
    how many."""
    receivers = list(project.notifications or [])
    if environment is not None:
        receivers += list(environment.notifications or [])
    planned = 0
    for receiver in events.receivers_of(receivers, event):
        message = {
            "event": event,
            "timestamp": (happened_at or now).isoformat(),
            "project": project.name,
            "environment": environment.name if environment is not None else None,
            **_empty_facts(),
            **facts,
        }
        await enqueue(
            session,
            action=Action.NOTIFY,
            ordering_key=receiver_key(project.name, str(receiver["name"])),
            repo=project.repo,
            payload={
                "delivery_id": str(uuid.uuid4()),
                "receiver": dict(receiver),
                "message": message,
            },
            now=now,
        )
        planned += 1
    return planned


def _empty_facts() -> dict[str, Any]:
    """Every message has every key, null when it does not apply."""
    return {
        "actor": None,
        "deployment": None,
        "release_candidate": None,
        "freeze": None,
        "reason": None,  # why a deploy was refused
        "window": None,  # the calendar window that opened or closed
        # Filled by the change reports (the pull requests a deployment brings): a list of
        # {"number", "title", "url"}, None when not known.
        "pull_requests": None,
    }


# --- the facts of each kind of event ---------------------------------------------------------


def candidate_facts(candidate: ReleaseCandidate) -> dict[str, Any]:
    return {
        "version": candidate.version,
        "repo": candidate.repo,
        "commit": candidate.commit_sha,
        "tag": candidate.tag,
        "build_status": candidate.build_status,
        "build_run_url": candidate.build_run_url,
        "build_error": _clip(candidate.build_error),
    }


def deployment_facts(deployment: Deployment) -> dict[str, Any]:
    return {
        "id": deployment.id,
        "kind": deployment.kind,
        "status": deployment.status,
        "actor": deployment.actor,
        "error_message": _clip(deployment.error_message),
        "workflow_run_url": deployment.workflow_run_url,
        "environment_url": deployment.environment.url,
        "started_at": deployment.deploy_start_at.isoformat(),
        "ended_at": deployment.deploy_end_at.isoformat() if deployment.deploy_end_at else None,
    }


def freeze_facts(environment: FreezeFacts, now: datetime) -> dict[str, Any] | None:
    freeze = current_freeze(environment, now)
    if freeze is None:
        return None
    return {
        "reason": freeze.reason,
        "by": freeze.by,
        "since": freeze.since.isoformat(),
        "until": freeze.until.isoformat() if freeze.until else None,
    }


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_ERROR:
        return text
    return text[: MAX_ERROR - 1] + "…"


# --- the transitions ---------------------------------------------------------------------------


async def _about_deployment(
    session: AsyncSession, event: str, deployment: Deployment, now: datetime
) -> None:
    environment = deployment.environment
    if not (environment.project.notifications or environment.notifications):
        return
    await plan_notification(
        session,
        event,
        project=environment.project,
        environment=environment,
        now=now,
        facts={
            "actor": deployment.actor,
            "deployment": deployment_facts(deployment),
            "release_candidate": candidate_facts(deployment.release_candidate),
            "pull_requests": await _pull_requests_shipped(session, deployment),
        },
    )


async def _pull_requests_shipped(
    session: AsyncSession, deployment: Deployment
) -> list[dict[str, Any]] | None:
    """The pull requests the deployment brings, from the change report between what ran
    there before and its candidate, when that report is stored (asked for by the API, or made
    by an earlier environment's success); None when it is not known."""
    before = deployment.from_release_candidate
    if before is None:
        return None
    project = deployment.environment.project
    row = await find_report(
        session,
        project.repo,
        before.commit_sha.lower(),
        deployment.release_candidate.commit_sha.lower(),
        PathFilter(tuple(project.paths or ())),
    )
    if row is None or row.completed_at is None or row.error is not None or row.diverged:
        return None
    return [
        {"number": pr.number, "title": pr.title, "url": pr.url}
        for pr in report_of(row).pull_requests
    ]


async def deployment_recorded(session: AsyncSession, deployment: Deployment, now: datetime) -> None:
    """A deployment was recorded (a deploy, a reported deploy or a rollback)."""
    await _about_deployment(session, events.recorded_event(deployment.kind), deployment, now)


async def deployment_status_changed(
    session: AsyncSession, deployment: Deployment, now: datetime
) -> None:
    """A deployment's status changed: news when it ended."""
    event = events.status_event(deployment.status)
    if event is not None:
        await _about_deployment(session, event, deployment, now)


async def freeze_changed(
    session: AsyncSession,
    environment: Environment,
    *,
    was_frozen: bool,
    actor: str | None,
    now: datetime,
) -> None:
    """An environment was frozen or unfrozen (`freeze_event` says whether that is news)."""
    frozen = current_freeze(environment, now) is not None
    event = events.freeze_event(was_frozen=was_frozen, frozen=frozen)
    if event is None:
        return
    await plan_notification(
        session,
        event,
        project=environment.project,
        environment=environment,
        now=now,
        facts={"actor": actor, "freeze": freeze_facts(environment, now)},
    )


async def build_finished(session: AsyncSession, candidate: ReleaseCandidate, now: datetime) -> None:
    """A candidate's build ended, ready or failed."""
    project = await session.get(Project, candidate.project_id)
    if project is None:
        return
    await plan_notification(
        session,
        events.build_event(candidate.build_status == BuildStatus.READY),
        project=project,
        environment=None,
        now=now,
        facts={"release_candidate": candidate_facts(candidate)},
    )


@dataclass(frozen=True)
class RefusalNotice:
    """A refused deploy or rollback, as `deployment.refused` tells it: taken when it was
    refused, told by `deploy_refused` (once its request's transaction has rolled back, or
    beside auto-deploy's change)."""

    environment_id: int
    facts: dict[str, Any]


def refusal_notice(
    environment: Environment,
    candidate: ReleaseCandidate | None,
    actor: str | None,
    reason: str,
    now: datetime,
) -> RefusalNotice:
    return RefusalNotice(
        environment.id,
        {
            "actor": actor,
            "release_candidate": candidate_facts(candidate) if candidate is not None else None,
            "freeze": freeze_facts(environment, now),
            "reason": _clip(reason),
        },
    )


async def deploy_refused(session: AsyncSession, notice: RefusalNotice, now: datetime) -> None:
    """Every policy refusal of a deploy or rollback, through any door (bot/app/policy.py)."""
    # Read again: after a rollback, what the request loaded is stale.
    environment = await session.get(Environment, notice.environment_id, populate_existing=True)
    if environment is None or not (environment.project.notifications or environment.notifications):
        return
    await plan_notification(
        session,
        events.DEPLOYMENT_REFUSED,
        project=environment.project,
        environment=environment,
        now=now,
        facts=notice.facts,
    )


def window_facts(span: Span) -> dict[str, Any]:
    """One occurrence of a calendar window: its start and end in UTC and on its wall clock."""
    zone = span.window.zone
    return {
        "name": span.window.name,
        "reason": span.window.reason,
        "timezone": span.window.timezone,
        "start": span.start.isoformat(),
        "end": span.end.isoformat(),
        "start_local": span.start.astimezone(zone).isoformat(),
        "end_local": span.end.astimezone(zone).isoformat(),
    }


async def freeze_window_passed(
    session: AsyncSession, environment: Environment, edge: Edge, now: datetime
) -> None:
    """A calendar window opened or closed (bot/app/freeze_windows.py finds it, up to a sweep
    interval later): the message's timestamp is when it did."""
    await plan_notification(
        session,
        events.window_event(edge.opening),
        project=environment.project,
        environment=environment,
        now=now,
        happened_at=edge.at,
        facts={"window": window_facts(edge.span)},
    )
