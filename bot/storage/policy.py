"""The queries behind the release policy (bot/domain/policy.py, bot/domain/approvals.py) and
its audit: each an indexed SELECT or one insert, never a whole history."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.pages import Page, PageRequest
from bot.domain.policy import ENDED_STATUSES, Required
from bot.storage.lookup import page_of
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
    deployment and the version it runs. Per environment, one MAX(id) per ended status (each a
    seek to the end of its range of the (environment, status, id) index; SQLite answers a MAX
    over an IN list by reading the whole range), then that one row."""
    if not names:
        return []
    rows = await session.execute(
        select(Environment.id, Environment.name).where(
            Environment.project_id == environment.project_id, Environment.name.in_(names)
        )
    )
    ids = {name: env_id for env_id, name in rows}
    found = []
    for name in names:
        env_id = ids.get(name)
        found.append(await _stay(session, name, env_id) if env_id else Required(name, None))
    return found


async def _stay(session: AsyncSession, name: str, environment_id: int) -> Required:
    # The values are written into the statement: with them as parameters, PostgreSQL's
    # generic plan for a prepared statement walks the primary key backwards instead, and
    # reads the whole table for a status the environment never had (bench/policy.py).
    where_environment = Deployment.environment_id == literal(environment_id, literal_execute=True)
    newest_per_status = [
        select(func.max(Deployment.id))
        .where(where_environment, Deployment.status == literal(status, literal_execute=True))
        .scalar_subquery()
        for status in ENDED_STATUSES
    ]
    ids = (await session.execute(select(*newest_per_status))).one()
    present = [i for i in ids if i is not None]
    if not present:
        return Required(name, None)
    newest = max(present)
    row = (
        await session.execute(
            select(
                Deployment.release_candidate_id,
                Deployment.status,
                Deployment.deploy_end_at,
                ReleaseCandidate.version,
            )
            .join(ReleaseCandidate, ReleaseCandidate.id == Deployment.release_candidate_id)
            .where(Deployment.id == newest)
        )
    ).one()
    running = row.version if row.status == "success" else None
    if ids[0] is not None and running is None:
        running = await session.scalar(
            select(ReleaseCandidate.version)
            .join(Deployment, Deployment.release_candidate_id == ReleaseCandidate.id)
            .where(Deployment.id == ids[0])
        )
    return Required(
        name, EndedStay(row.release_candidate_id, row.status, row.deploy_end_at), running
    )


# --- approvals ----------------------------------------------------------------------------


async def approvals_of(session: AsyncSession, deployment_id: int) -> list[Approval]:
    found = await session.scalars(
        select(Approval).where(Approval.deployment_id == deployment_id).order_by(Approval.id)
    )
    return list(found)


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


async def audit_page(
    session: AsyncSession,
    project_id: int,
    environment_id: int | None,
    page: PageRequest,
) -> Page[AuditEvent]:
    """A project's decisions (or one environment's), newest first."""
    where = (
        AuditEvent.environment_id == environment_id
        if environment_id is not None
        else AuditEvent.project_id == project_id
    )
    query = select(AuditEvent).where(where).order_by(AuditEvent.id.desc())
    return await page_of(session, query, page)


@dataclass(frozen=True)
class AuditListed:
    """An audit row with the names it refers to by id."""

    event: AuditEvent
    environment: str | None
    version: str | None


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
    where = [
        AuditEvent.environment_id == environment_id
        if environment_id is not None
        else AuditEvent.project_id == project_id
    ]
    if before_id is not None:
        where.append(AuditEvent.id < before_id)
    rows = await session.execute(
        select(AuditEvent, Environment.name, ReleaseCandidate.version)
        .outerjoin(Environment, Environment.id == AuditEvent.environment_id)
        .outerjoin(ReleaseCandidate, ReleaseCandidate.id == AuditEvent.release_candidate_id)
        .where(*where)
        .order_by(AuditEvent.id.desc())
        .limit(limit)
    )
    return [AuditListed(event, name, version) for event, name, version in rows]
