"""What an environment looks like now: running version, freeze, deployment under way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.freeze import Freeze, current_freeze
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


async def describe_environment(
    session: AsyncSession, environment: Environment, now: datetime
) -> EnvironmentState:
    active = await active_deployments(session, environment)
    return EnvironmentState(
        environment=environment,
        running=await running_release_candidate(session, environment),
        freeze=current_freeze(environment, now),
        active=active[0] if active else None,
    )


async def describe_environments(
    session: AsyncSession, project_name: str, now: datetime
) -> list[EnvironmentState]:
    project = await find_project(session, project_name)
    return [
        await describe_environment(session, environment, now)
        for environment in await environments_of(session, project)
    ]
