"""The dashboard's reads: every environment's state in a handful of batched queries (never one
per environment), and the change mark the live updates poll.

Each query seeks an index: the per-environment newest success and newest failure through
(environment, status, id), the active deployments through (environment, status), the newest
candidates through the primary key, the mark through the primary keys, (updated_at) and
(build_status).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, raiseload

from bot.domain.statuses import ACTIVE_STATUSES, BuildStatus, DeploymentStatus
from bot.storage.models import (
    ChangeReport,
    Deployment,
    Environment,
    Project,
    ReleaseCandidate,
)

FAILED_STATUSES = (DeploymentStatus.FAILURE, DeploymentStatus.ERROR)


async def projects_with_environments(
    session: AsyncSession, names: frozenset[str] | None
) -> list[tuple[Project, list[Environment]]]:
    """The projects in the file now (those named, or all) with their current environments, in
    the file's order: two queries."""
    query = select(Project).where(Project.removed_at.is_(None)).order_by(Project.id)
    if names is not None:
        query = query.where(Project.name.in_(sorted(names)))
    projects = list(await session.scalars(query))
    if not projects:
        return []
    environments = await session.scalars(
        select(Environment)
        .where(
            Environment.project_id.in_([p.id for p in projects]),
            Environment.removed_at.is_(None),
        )
        .order_by(Environment.id)
    )
    by_project: dict[int, list[Environment]] = {p.id: [] for p in projects}
    for environment in environments:
        by_project[environment.project_id].append(environment)
    return [(p, by_project[p.id]) for p in projects]


async def _newest_per_environment(
    session: AsyncSession, environment_ids: Sequence[int], statuses: Sequence[str]
) -> dict[int, Deployment]:
    """The newest deployment of each environment among `statuses`: per environment and
    status one MAX(id), each a seek to the end of its (environment, status, id) range (a
    GROUP BY over them would read every matching row: 100 ms at 1 000 000 deployments), all in
    one statement; then the rows by id."""
    if not environment_ids:
        return {}
    newest = [
        select(func.max(Deployment.id))
        .where(Deployment.environment_id == Environment.id, Deployment.status == status)
        .correlate(Environment)
        .scalar_subquery()
        for status in statuses
    ]
    found_ids = await session.execute(select(*newest).where(Environment.id.in_(environment_ids)))
    ids = [max(found) for found in (_known(row) for row in found_ids) if found]
    if not ids:
        return {}
    found = await session.scalars(select(Deployment).where(Deployment.id.in_(ids)).options(*_CELL))
    return {deployment.environment_id: deployment for deployment in found}


# A cell shows its deployment's own columns and its candidate's version; the caller has the
# environment. Loading the rest (the environment and project, the previous candidate, each
# release) made seven objects a row: 4 200 for the overview at 50 x 6, 70 ms.
_CELL = (
    joinedload(Deployment.release_candidate).raiseload(ReleaseCandidate.release),
    raiseload(Deployment.from_release_candidate),
    raiseload(Deployment.environment),
)


def _known(ids: Sequence[int | None]) -> list[int]:
    return [i for i in ids if i is not None]


async def running_deployments(
    session: AsyncSession, environment_ids: Sequence[int]
) -> dict[int, Deployment]:
    """Each environment's newest success (what runs there), by environment id."""
    return await _newest_per_environment(session, environment_ids, [DeploymentStatus.SUCCESS])


async def last_failures(
    session: AsyncSession, environment_ids: Sequence[int]
) -> dict[int, Deployment]:
    """Each environment's newest failed or errored deployment, by environment id."""
    return await _newest_per_environment(session, environment_ids, FAILED_STATUSES)


async def active_deployments(
    session: AsyncSession, environment_ids: Sequence[int]
) -> dict[int, Deployment]:
    """Each environment's newest deployment under way, by environment id."""
    return await _newest_per_environment(session, environment_ids, sorted(ACTIVE_STATUSES))


async def newest_candidates(
    session: AsyncSession, project_ids: Sequence[int], limit: int
) -> list[ReleaseCandidate]:
    if not project_ids:
        return []
    found = await session.scalars(
        select(ReleaseCandidate)
        .where(ReleaseCandidate.project_id.in_(project_ids))
        .order_by(ReleaseCandidate.id.desc())
        .limit(limit)
    )
    return list(found)


@dataclass(frozen=True)
class ChangeMark:
    """What the dashboard shows changes only when one of these does (compared whole)."""

    newest_deployment: int | None
    last_deployment_change: datetime | None
    newest_candidate: int | None
    building: int
    freezes: str
    reports: tuple[int | None, int]

    @property
    def token(self) -> str:
        """The mark as an SSE event id: compact, and equal only for equal marks."""
        changed = self.last_deployment_change.isoformat() if self.last_deployment_change else ""
        return "|".join(
            str(part)
            for part in (
                self.newest_deployment,
                changed,
                self.newest_candidate,
                self.building,
                self.freezes,
                *self.reports,
            )
        )


async def change_mark(session: AsyncSession, now: datetime) -> ChangeMark:
    """The cheap "has anything changed" query, run once a second per process while someone
    watches: index seeks and the (small) environments table."""
    # Two scalar subqueries, not MAX(id), MAX(updated_at) in one SELECT: SQLite seeks an
    # index only for a lone MIN/MAX, and scanned the table for the pair (118 ms at 1 000 000).
    deployments = (
        await session.execute(
            select(
                select(func.max(Deployment.id)).scalar_subquery(),
                select(func.max(Deployment.updated_at)).scalar_subquery(),
            )
        )
    ).one()
    candidates = (
        await session.execute(
            select(
                func.max(ReleaseCandidate.id),
                select(func.count())
                .where(ReleaseCandidate.build_status == BuildStatus.BUILDING)
                .scalar_subquery(),
            )
        )
    ).one()
    in_effect = or_(Environment.frozen_until.is_(None), Environment.frozen_until > now)
    freezes = (
        await session.execute(
            select(func.count(), func.max(Environment.frozen_at)).where(
                Environment.frozen_at.is_not(None), in_effect
            )
        )
    ).one()
    reports = (
        await session.execute(
            select(
                func.max(ChangeReport.id),
                select(func.count()).where(ChangeReport.completed_at.is_(None)).scalar_subquery(),
            )
        )
    ).one()
    last_change = deployments[1]
    if isinstance(last_change, str):  # SQLite hands MAX() of a datetime back as text
        last_change = datetime.fromisoformat(last_change)
    return ChangeMark(
        newest_deployment=deployments[0],
        last_deployment_change=last_change,
        newest_candidate=candidates[0],
        building=int(candidates[1] or 0),
        freezes=f"{freezes[0]}:{freezes[1]}",
        reports=(reports[0], int(reports[1] or 0)),
    )
