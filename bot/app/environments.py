"""What an environment looks like now: running version, freezes (manual and calendar),
its release policy, deployment under way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.policy import policy_of
from bot.domain.calendar import Span
from bot.domain.freeze import Freeze, current_freeze
from bot.domain.policy import NO_POLICY, EnvironmentPolicy, calendar_freeze, upcoming_window
from bot.storage.deployments import active_deployments, running_release_candidate
from bot.storage.environments import environments_of
from bot.storage.models import Deployment, Environment, ReleaseCandidate
from bot.storage.projects import find_project


@dataclass(frozen=True)
class EnvironmentState:
    environment: Environment
    running: ReleaseCandidate | None
    freeze: Freeze | None
    active: Deployment | None  # the newest deployment still under way
    calendar_freeze: Span | None = None  # the calendar window in effect, until its freeze ends
    next_freeze: Span | None = None  # the next calendar window to begin
    policy: EnvironmentPolicy = NO_POLICY


async def describe_environment(
    session: AsyncSession, environment: Environment, now: datetime
) -> EnvironmentState:
    active = await active_deployments(session, environment)
    policy = policy_of(environment)
    return EnvironmentState(
        environment=environment,
        running=await running_release_candidate(session, environment),
        freeze=current_freeze(environment, now),
        active=active[0] if active else None,
        calendar_freeze=calendar_freeze(policy, now),
        next_freeze=upcoming_window(policy, now),
        policy=policy,
    )


async def describe_environments(
    session: AsyncSession, project_name: str, now: datetime
) -> list[EnvironmentState]:
    project = await find_project(session, project_name)
    return [
        await describe_environment(session, environment, now)
        for environment in await environments_of(session, project)
    ]
