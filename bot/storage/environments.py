"""The queries that list a project's environments: all of them, or those auto-deploy reaches."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.statuses import ACTIVE_STATUSES
from bot.storage.batch_reads import BatchReads
from bot.storage.models import Deployment, Environment, Project

# Built once: it runs for every new RC, and building it costs more than running it.
# `bot.domain.environments.takes_auto_deploy` is the rule; this finds its candidates (the release
# policy, freezes included, is decided on the rows) and locks them, as every rule deciding from
# an environment does.
_AUTO_DEPLOY_ENVIRONMENTS = (
    select(Environment)
    .where(
        Environment.project_id == bindparam("project_id"),
        Environment.auto_deploy.is_(True),
        Environment.removed_at.is_(None),
        Environment.auto_deploy_paused_at.is_(None),
    )
    .order_by(Environment.id)
    .with_for_update(of=Environment)
)
# Whether any environment of a project asks for auto-deploy: only the projects file's sync
# changes that, so a batch of webhook deliveries asks once.
_TAKES_AUTO_DEPLOY = (
    select(Environment.id)
    .where(
        Environment.project_id == bindparam("project_id"),
        Environment.auto_deploy.is_(True),
        Environment.removed_at.is_(None),
    )
    .limit(1)
)


async def environments_of(session: AsyncSession, project: Project) -> list[Environment]:
    """Every environment of the project, removed ones included, in the projects file's order."""
    found = await session.scalars(
        select(Environment).where(Environment.project_id == project.id).order_by(Environment.id)
    )
    return list(found)


async def environment_names(session: AsyncSession, project_name: str) -> list[str]:
    """The names of the project's environments in the projects file now (removed ones left
    out), in its order."""
    found = await session.scalars(
        select(Environment.name)
        .join(Project, Project.id == Environment.project_id)
        .where(Project.name == project_name, Environment.removed_at.is_(None))
        .order_by(Environment.id)
    )
    return list(found)


async def auto_deploy_environments(session: AsyncSession, project_id: int) -> list[Environment]:
    """The project's environments that ask for auto-deploy and are neither removed nor paused,
    locked."""
    return list(await session.scalars(_AUTO_DEPLOY_ENVIRONMENTS, {"project_id": project_id}))


async def takes_auto_deploy_anywhere(
    session: AsyncSession, project: Project, reads: BatchReads
) -> bool:
    """Whether an environment of the project asks for auto-deploy and is not removed (paused
    or not), read once per batch: when none does, `auto_deploy_environments` would find none."""
    known = reads.auto_deploys.get(project.id)
    if known is None:
        known = await session.scalar(_TAKES_AUTO_DEPLOY, {"project_id": project.id}) is not None
        reads.auto_deploys[project.id] = known
    return known


async def environments_deploying(session: AsyncSession) -> list[int]:
    """The ids of the environments with a deployment under way (the timeout sweeper's round)."""
    under_way = (
        select(Deployment.id)
        .where(
            Deployment.environment_id == Environment.id,
            Deployment.status.in_(ACTIVE_STATUSES),
        )
        .exists()
    )
    return list(await session.scalars(select(Environment.id).where(under_way)))


class CalendarWatch(NamedTuple):
    """What the window sweeper reads of an environment (bot/app/freeze_windows.py)."""

    id: int
    policy: dict[str, Any]
    removed_at: datetime | None
    calendar_checked_at: datetime | None


async def calendar_watches(session: AsyncSession) -> list[CalendarWatch]:
    """Every environment's policy and calendar watermark, unlocked: the window sweeper's
    round, which locks only those with something to tell or to move."""
    rows = await session.execute(
        select(
            Environment.id,
            Environment.policy,
            Environment.removed_at,
            Environment.calendar_checked_at,
        ).order_by(Environment.id)
    )
    return [CalendarWatch(*row) for row in rows]


async def locked_environment(session: AsyncSession, environment_id: int) -> Environment | None:
    """The environment, locked for a decision (as `find_environment(lock=True)`)."""
    found: Environment | None = await session.scalar(
        select(Environment).where(Environment.id == environment_id).with_for_update(of=Environment)
    )
    return found


async def environments_of_projects(
    session: AsyncSession, project_ids: list[int]
) -> list[Environment]:
    """Every environment of these projects (removed ones included), in the projects file's
    order: one statement for any number of projects."""
    found = await session.scalars(
        select(Environment)
        .where(Environment.project_id.in_(project_ids))
        .order_by(Environment.project_id, Environment.id)
    )
    return list(found)


async def environments_named(
    session: AsyncSession, keys: Sequence[tuple[int, str]]
) -> list[Environment]:
    """The environments of these (project id, name), removed ones included: one statement,
    a seek of the (project_id, name) unique index per project, reading only the environments
    asked for (a query over 50 projects that asks for production and staging reads 100, not
    all 300)."""
    if not keys:
        return []
    wanted = set(keys)
    found = await session.scalars(
        select(Environment).where(
            Environment.project_id.in_(sorted({project for project, _ in wanted})),
            Environment.name.in_(sorted({name for _, name in wanted})),
        )
    )
    return [e for e in found if (e.project_id, e.name) in wanted]
