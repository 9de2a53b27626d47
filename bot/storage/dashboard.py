"""The dashboard's reads: every environment's state in a handful of batched queries (never one
per environment), and the change mark the live updates poll.

Each query seeks an index: the per-environment newest success, failure and deployment under
way through (environment, status, id), the newest candidates through the primary key, the mark
through the primary keys, (updated_at) and (build_status).

The overview's reads (`overview_environments`, `overview_deployments`, `newest_candidate_facts`)
hand back plain values, not ORM objects: building ~3 800 objects a page (and converting every
datetime column of them) was half of an overview's time. They select only the columns shown,
with one datetime per deployment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, case, func, or_, select, type_coerce, union
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, raiseload

from bot.domain.statuses import ACTIVE_STATUSES, BuildStatus, DeploymentStatus
from bot.storage.lookup import one_of
from bot.storage.models import (
    ChangeReport,
    Deployment,
    Environment,
    Project,
    ReleaseCandidate,
    UTCDateTime,
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


async def environments_running(
    session: AsyncSession, project_id: int
) -> list[tuple[Environment, Deployment | None]]:
    """The project's current environments in the file's order, each with its newest success
    (what runs there, its candidate loaded): the environments with the newest success's id
    in one statement (a seek to the end of its (environment, status, id) range), then those
    deployments."""
    newest = (
        select(func.max(Deployment.id))
        .where(
            Deployment.environment_id == Environment.id,
            Deployment.status == DeploymentStatus.SUCCESS,
        )
        .correlate(Environment)
        .scalar_subquery()
    )
    listed = (
        await session.execute(
            select(Environment, newest)
            .where(Environment.project_id == project_id, Environment.removed_at.is_(None))
            .order_by(Environment.id)
        )
    ).all()
    ids = [running for _, running in listed if running is not None]
    found: dict[int, Deployment] = {}
    if ids:
        rows = await session.scalars(
            select(Deployment).where(Deployment.id.in_(ids)).options(*_CELL)
        )
        found = {deployment.id: deployment for deployment in rows}
    return [
        (environment, None if running is None else found.get(running))
        for environment, running in listed
    ]


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


# --- the overview: plain values --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProjectFacts:
    id: int
    name: str
    repo: str


@dataclass(frozen=True, slots=True)
class EnvironmentFacts:
    """An environment as the overview shows it (and as `freeze.current_freeze` reads it)."""

    id: int
    name: str
    production: bool
    frozen_at: datetime | None
    frozen_by: str | None
    frozen_reason: str | None
    frozen_until: datetime | None


@dataclass(frozen=True, slots=True)
class DeploymentFacts:
    """A deployment as an overview cell shows it."""

    id: int
    environment_id: int
    release_candidate_id: int
    version: str  # its candidate's
    status: str
    # The one time a cell shows: a success's end (what runs since when), else the last change.
    at: datetime
    workflow_run_url: str | None


@dataclass(frozen=True, slots=True)
class NewestDeployments:
    """An environment's newest success, deployment under way and failure (or error)."""

    running: DeploymentFacts | None = None
    active: DeploymentFacts | None = None
    last_failure: DeploymentFacts | None = None


@dataclass(frozen=True, slots=True)
class CandidateFacts:
    id: int
    project_id: int
    version: str
    build_status: str
    created_at: datetime


async def overview_environments(
    session: AsyncSession, names: frozenset[str] | None
) -> list[tuple[ProjectFacts, list[EnvironmentFacts]]]:
    """The projects in the file now (those named, or all) with their current environments, in
    the file's order: one query."""
    query = (
        select(
            Project.id,
            Project.name,
            Project.repo,
            Environment.id,
            Environment.name,
            Environment.production,
            Environment.frozen_at,
            Environment.frozen_by,
            Environment.frozen_reason,
            Environment.frozen_until,
        )
        .outerjoin(
            Environment,
            and_(Environment.project_id == Project.id, Environment.removed_at.is_(None)),
        )
        .where(Project.removed_at.is_(None))
        .order_by(Project.id, Environment.id)
    )
    if names is not None:
        query = query.where(Project.name.in_(sorted(names)))
    listed: list[tuple[ProjectFacts, list[EnvironmentFacts]]] = []
    for row in await session.execute(query):
        project_id, name, repo, environment_id, *environment = row
        if not listed or listed[-1][0].id != project_id:
            listed.append((ProjectFacts(project_id, name, repo), []))
        if environment_id is not None:
            listed[-1][1].append(EnvironmentFacts(environment_id, *environment))
    return listed


# The overview's three kinds of newest deployment, by the statuses each is the newest of.
_NEWEST_KINDS = (
    ("running", (DeploymentStatus.SUCCESS,)),
    ("active", tuple(sorted(ACTIVE_STATUSES))),
    ("last_failure", FAILED_STATUSES),
)
_SHOWN_AT = type_coerce(
    case(
        (
            Deployment.status == DeploymentStatus.SUCCESS,
            func.coalesce(Deployment.deploy_end_at, Deployment.updated_at),
        ),
        else_=Deployment.updated_at,
    ),
    UTCDateTime(),
)


async def overview_deployments(
    session: AsyncSession, environment_ids: Sequence[int]
) -> dict[int, NewestDeployments]:
    """Each environment's newest success, deployment under way and failure, by environment
    id: one statement for the ids (per environment and status one MAX(id), a seek to the end
    of its (environment, status, id) range), one for the rows."""
    if not environment_ids:
        return {}
    statuses = [status for _, group in _NEWEST_KINDS for status in group]
    newest = [
        select(func.max(Deployment.id))
        .where(Deployment.environment_id == Environment.id, Deployment.status == status)
        .correlate(Environment)
        .scalar_subquery()
        for status in statuses
    ]
    found = await session.execute(
        select(Environment.id, *newest).where(one_of(session, Environment.id, environment_ids))
    )
    kinds: dict[int, dict[str, int]] = {}
    for environment_id, *ids in found:
        column = iter(ids)
        chosen = {}
        for kind, group in _NEWEST_KINDS:
            known = [i for i in (next(column) for _ in group) if i is not None]
            if known:
                chosen[kind] = max(known)
        kinds[environment_id] = chosen
    wanted = sorted({i for chosen in kinds.values() for i in chosen.values()})
    rows: dict[int, DeploymentFacts] = {}
    if wanted:
        selected = await session.execute(
            select(
                Deployment.id,
                Deployment.environment_id,
                Deployment.release_candidate_id,
                ReleaseCandidate.version,
                Deployment.status,
                _SHOWN_AT,
                Deployment.workflow_run_url,
            )
            .join(ReleaseCandidate, ReleaseCandidate.id == Deployment.release_candidate_id)
            .where(one_of(session, Deployment.id, wanted))
        )
        rows = {row[0]: DeploymentFacts(*row) for row in selected}
    return {
        environment_id: NewestDeployments(**{kind: rows[i] for kind, i in chosen.items()})
        for environment_id, chosen in kinds.items()
    }


@dataclass(frozen=True, slots=True)
class DeploymentsSeen:
    """How far the deployments went when read: the newest id and the last change."""

    newest_id: int
    last_change: datetime | None


async def deployments_seen(session: AsyncSession) -> DeploymentsSeen:
    """The newest deployment id and `updated_at`: two index ends (each a lone MAX)."""
    newest_id, last_change = (
        await session.execute(
            select(
                select(func.max(Deployment.id)).scalar_subquery(),
                select(func.max(Deployment.updated_at)).scalar_subquery(),
            )
        )
    ).one()
    if isinstance(last_change, str):  # SQLite hands MAX() of a datetime back as text
        last_change = datetime.fromisoformat(last_change)
    if last_change is not None and last_change.tzinfo is None:
        last_change = last_change.replace(tzinfo=UTC)
    return DeploymentsSeen(newest_id or 0, last_change)


async def environments_changed_since(
    session: AsyncSession, seen: DeploymentsSeen, slack: timedelta
) -> set[int]:
    """The environments with a deployment added since `seen`, or changed since `slack`
    before its last change (a write that took its time stamp earlier but committed later, a
    replica's clock a little behind): the primary key's and the (updated_at) index's ends."""
    added = select(Deployment.environment_id).where(Deployment.id > seen.newest_id)
    if seen.last_change is None:
        return set(await session.scalars(added.distinct()))
    changed = select(Deployment.environment_id).where(
        Deployment.updated_at >= seen.last_change - slack
    )
    return set(await session.scalars(union(added, changed)))


async def newest_candidate_facts(
    session: AsyncSession, project_ids: Sequence[int], limit: int
) -> list[CandidateFacts]:
    """The newest `limit` candidates of the projects, read backwards along the primary key.

    `project_id + 0` keeps the planner off the (project_id, version) index, through which
    SQLite read every candidate of the projects and sorted them (6 ms at 10 000, the overview's
    dearest query); from the key's end the newest ten of fifty projects are the last ten rows
    (0.8 ms). A scope of one project with few candidates reads further back instead (2-3 ms at
    10 000)."""
    if not project_ids:
        return []
    found = await session.execute(
        select(
            ReleaseCandidate.id,
            ReleaseCandidate.project_id,
            ReleaseCandidate.version,
            ReleaseCandidate.build_status,
            ReleaseCandidate.created_at,
        )
        .where((ReleaseCandidate.project_id + 0).in_(project_ids))
        .order_by(ReleaseCandidate.id.desc())
        .limit(limit)
    )
    return [CandidateFacts(*row) for row in found]


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
    """The cheap "has anything changed" query, run on every page and once a second per
    process while someone watches: index seeks and the (small) environments table, in one
    statement (one snapshot, one round trip; as four it cost 3.6 ms on PostgreSQL, mostly
    the round trips).

    Each aggregate is a scalar subquery of its own, not MAX(id), MAX(updated_at) in one
    SELECT: SQLite seeks an index only for a lone MIN/MAX, and scanned the table for the
    pair (118 ms at 1 000 000)."""
    in_effect = or_(Environment.frozen_until.is_(None), Environment.frozen_until > now)
    frozen = and_(Environment.frozen_at.is_not(None), in_effect)
    mark = (
        await session.execute(
            select(
                select(func.max(Deployment.id)).scalar_subquery(),
                select(func.max(Deployment.updated_at)).scalar_subquery(),
                select(func.max(ReleaseCandidate.id)).scalar_subquery(),
                select(func.count())
                .where(ReleaseCandidate.build_status == BuildStatus.BUILDING)
                .scalar_subquery(),
                select(func.count()).where(frozen).scalar_subquery(),
                select(func.max(Environment.frozen_at)).where(frozen).scalar_subquery(),
                select(func.max(ChangeReport.id)).scalar_subquery(),
                select(func.count()).where(ChangeReport.completed_at.is_(None)).scalar_subquery(),
            )
        )
    ).one()
    (
        newest_deployment,
        last_change,
        newest_candidate,
        building,
        freezes,
        last_freeze,
        newest_report,
        pending_reports,
    ) = mark
    if isinstance(last_change, str):  # SQLite hands MAX() of a datetime back as text
        last_change = datetime.fromisoformat(last_change)
    return ChangeMark(
        newest_deployment=newest_deployment,
        last_deployment_change=last_change,
        newest_candidate=newest_candidate,
        building=int(building or 0),
        freezes=f"{freezes}:{last_freeze}",
        reports=(newest_report, int(pending_reports or 0)),
    )
