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
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.clock import Clock
from bot.core.errors import DomainError
from bot.domain import notifications as events
from bot.domain.changes import PathFilter
from bot.domain.environments import auto_deploy_frozen_out
from bot.domain.freeze import FreezeFacts, current_freeze
from bot.domain.statuses import BuildStatus
from bot.storage.change_reports import find_report, report_of
from bot.storage.models import Deployment, Environment, Project, ReleaseCandidate
from bot.storage.outbox import Action, enqueue, receiver_key
from bot.storage.projects import find_environment
from bot.storage.releases import find_release_candidate

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
) -> int:
    """One outbox item per receiver of `project` (and of `environment`) that hears of
    `event`; returns how many."""
    receivers = list(project.notifications or [])
    if environment is not None:
        receivers += list(environment.notifications or [])
    planned = 0
    for receiver in events.receivers_of(receivers, event):
        message = {
            "event": event,
            "timestamp": now.isoformat(),
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


async def _refused(
    session: AsyncSession,
    environment: Environment,
    candidate: dict[str, Any] | None,
    actor: str | None,
    now: datetime,
) -> None:
    await plan_notification(
        session,
        events.DEPLOYMENT_REFUSED,
        project=environment.project,
        environment=environment,
        now=now,
        facts={
            "actor": actor,
            "release_candidate": candidate,
            "freeze": freeze_facts(environment, now),
        },
    )


async def auto_deploy_refused(
    session: AsyncSession,
    environments: Sequence[Environment],
    candidate: ReleaseCandidate,
    actor: str,
    now: datetime,
) -> None:
    """A ready RC that auto-deploy would have deployed to frozen environments: refused there,
    in the transaction that made it ready."""
    for environment in auto_deploy_frozen_out(environments, now):
        await _refused(session, environment, candidate_facts(candidate), actor, now)


async def deploy_refused_for_freeze(
    session: AsyncSession,
    *,
    project_name: str,
    environment_name: str,
    version: str | None,
    actor: str | None,
    clock: Clock,
) -> None:
    """A deploy (or rollback) refused because the environment is frozen. The refusal rolled
    its own transaction back, so its adapter calls this in one of its own afterwards; the
    environment is looked at again and nothing is said if it is no longer frozen."""
    environment = await find_environment(session, project_name, environment_name, lock=True)
    now = clock()
    if current_freeze(environment, now) is None:
        return
    await _refused(
        session, environment, await _asked_for(session, environment, version), actor, now
    )


async def _asked_for(
    session: AsyncSession, environment: Environment, version: str | None
) -> dict[str, Any] | None:
    """The candidate a refused deploy asked for, as far as it exists."""
    if version is None:
        return None
    try:
        candidate = await find_release_candidate(session, environment.project, version)
    except DomainError:
        return {"version": version}
    return candidate_facts(candidate)
