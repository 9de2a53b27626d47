"""The queries behind the release policy (bot/domain/policy.py, bot/domain/approvals.py) and
its audit: each an indexed SELECT or one insert, never a whole history."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.pages import Page, PageRequest
from bot.domain.policy import ENDED_STATUSES, Required
from bot.domain.statuses import DeploymentStatus
from bot.storage.models import Approval, AuditEvent, Deployment, Environment, ReleaseCandidate


@dataclass(frozen=True)
class EndedStay:
    release_candidate_id: int
    status: str
    deploy_end_at: datetime | None


async def required_stays(
    session: AsyncSession, environment: Environment, names: Sequence[str]
) -> list[Required]:
    """For each environment `names` lists (the projects file's order): its newest ended
    deployment and the version it runs, in one statement whatever their number: the
    deployments whose ids are, per environment and ended status, the newest (one MAX(id)
    each, a seek to the end of its range of the (environment, status, id) index; SQLite
    answers a MAX over an IN list by reading the whole range), with their candidates'
    versions.

    The ids and statuses are written into the statement: as parameters, PostgreSQL's generic
    plan for the prepared statement walks the primary key backwards instead, reading the
    whole table for a status the environment never had (bench/policy.py)."""
    if not names:
        return []
    ids = await _environment_ids(session, environment.project_id, names)
    present = {ids[name]: name for name in names if name in ids}
    rows: dict[int, Any] = {}
    if present:
        result = await session.execute(_stays_statement(tuple(present)))
        rows = {r.id: r for r in result}
    by_name: dict[str, list[Any]] = {name: [] for name in names}
    for row in rows.values():
        by_name[present[row.environment_id]].append(row)
    return [_stay(name, by_name[name]) for name in names]


@functools.lru_cache(maxsize=1024)
def _stays_statement(environment_ids: tuple[int, ...]) -> Any:
    """Built once per set of environments: every deploy to an environment with `requires`
    asks the same, and building its dozen subqueries costs more than running them."""
    newest = [_newest_id(env_id, status) for env_id in environment_ids for status in ENDED_STATUSES]
    return (
        select(
            Deployment.id,
            Deployment.environment_id,
            Deployment.release_candidate_id,
            Deployment.status,
            Deployment.deploy_end_at,
            ReleaseCandidate.version,
        )
        .join(ReleaseCandidate, ReleaseCandidate.id == Deployment.release_candidate_id)
        .where(Deployment.id.in_(newest))
    )


def _newest_id(environment_id: int, status: str) -> Any:
    return (
        select(func.max(Deployment.id))
        .where(
            Deployment.environment_id == literal(environment_id, literal_execute=True),
            Deployment.status == literal(status, literal_execute=True),
        )
        .scalar_subquery()
    )


def _stay(name: str, newest: list[Any]) -> Required:
    """One required environment from its newest deployment of each ended status."""
    if not newest:
        return Required(name, None)
    last = max(newest, key=lambda row: row.id)
    success = next((row for row in newest if row.status == DeploymentStatus.SUCCESS), None)
    stay = EndedStay(last.release_candidate_id, last.status, last.deploy_end_at)
    return Required(name, stay, success.version if success is not None else None)


# A project's environments by name, per engine (so per database). An environment keeps its
# row and id for good (one that left the projects file is marked, never deleted): what was
# read once stays true, and a name not read yet (an environment added since) reads again.
_ENVIRONMENT_IDS: weakref.WeakKeyDictionary[Any, dict[int, dict[str, int]]] = (
    weakref.WeakKeyDictionary()
)


async def _environment_ids(
    session: AsyncSession, project_id: int, names: Sequence[str]
) -> dict[str, int]:
    known = _ENVIRONMENT_IDS.setdefault(session.get_bind(), {})
    ids = known.get(project_id)
    if ids is None or any(name not in ids for name in names):
        rows = await session.execute(
            select(Environment.name, Environment.id).where(Environment.project_id == project_id)
        )
        ids = known[project_id] = {row.name: row.id for row in rows}
    return ids


# --- approvals ----------------------------------------------------------------------------


async def approvals_of(session: AsyncSession, deployment_id: int) -> list[Approval]:
    return await approvals_of_deployments(session, [deployment_id])


async def add_approval(
    session: AsyncSession,
    deployment_id: int,
    *,
    approver: str,
    door: str,
    now: datetime,
    expires_at: datetime,
) -> Approval:
    approval = Approval(
        deployment_id=deployment_id,
        approver=approver,
        door=door,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(approval)
    await session.flush()
    return approval


async def approvals_of_deployments(
    session: AsyncSession, deployment_ids: Sequence[int]
) -> list[Approval]:
    """The approvals of these deployments, oldest first: one statement for all of them."""
    if not deployment_ids:
        return []
    found = await session.scalars(
        select(Approval).where(Approval.deployment_id.in_(deployment_ids)).order_by(Approval.id)
    )
    return list(found)


# --- the audit ------------------------------------------------------------------------------


async def record_audit(session: AsyncSession, event: AuditEvent) -> None:
    session.add(event)
    await session.flush()


@dataclass(frozen=True)
class AuditListed:
    """An audit row with the names it refers to by id."""

    event: AuditEvent
    environment: str | None
    version: str | None


def _audit_listing(project_id: int, environment_id: int | None) -> Select[AuditEvent, str, str]:
    """A project's decisions (or one environment's), newest first, with their environment's
    name and candidate's version joined in by primary key: the (project_id, id) or
    (environment_id, id) index walked backwards."""
    where = (
        AuditEvent.environment_id == environment_id
        if environment_id is not None
        else AuditEvent.project_id == project_id
    )
    return (
        select(AuditEvent, Environment.name, ReleaseCandidate.version)
        .outerjoin(Environment, Environment.id == AuditEvent.environment_id)
        .outerjoin(ReleaseCandidate, ReleaseCandidate.id == AuditEvent.release_candidate_id)
        .where(where)
        .order_by(AuditEvent.id.desc())
    )


async def audit_slice(
    session: AsyncSession,
    project_id: int,
    environment_id: int | None,
    before_id: int | None,
    limit: int,
) -> list[AuditListed]:
    """A project's decisions (or one environment's), newest first, older than `before_id` (a
    keyset cursor), at most `limit`, with their environment's name and candidate's version
    joined in: one statement."""
    query = _audit_listing(project_id, environment_id)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    rows = await session.execute(query.limit(limit))
    return [AuditListed(event, name, version) for event, name, version in rows]


async def audit_rows(
    session: AsyncSession,
    project_id: int,
    environment_id: int | None,
    page: PageRequest,
) -> Page[AuditListed]:
    """The same, by page number (the dashboard's pages): one statement, one row more than
    the page to know whether another follows."""
    query = _audit_listing(project_id, environment_id).offset(page.offset)
    rows = await session.execute(query.limit(page.per_page + 1))
    listed = [AuditListed(event, name, version) for event, name, version in rows]
    return Page(items=listed[: page.per_page], has_next=len(listed) > page.per_page)
