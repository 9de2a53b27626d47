"""The queries behind the deployment rules (bot/domain/statuses.py, bot/domain/rollback.py):
each finds what a rule needs with one indexed SELECT, never an environment's whole history.

SQLite keeps no statistics, so some queries are shaped for its planner; the notes say where.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from bot.core import errors
from bot.core.pages import Page, PageRequest
from bot.domain.rollback import TargetSearch
from bot.domain.statuses import ACTIVE_STATUSES, DeploymentKind, DeploymentStatus, is_final
from bot.storage.lookup import inserted, one_or_not_found, page_of
from bot.storage.models import Deployment, Environment, ReleaseCandidate


def _newest_first(*where: Any) -> Select[Deployment]:
    return select(Deployment).where(*where).order_by(Deployment.id.desc())


async def _newest(session: AsyncSession, *where: Any) -> Deployment | None:
    return await session.scalar(_newest_first(*where).limit(1))


async def running_deployment(session: AsyncSession, environment: Environment) -> Deployment | None:
    """`bot.domain.rollback.running_deployment`: the newest success, through the
    (environment, status, id) index."""
    return await _newest(
        session,
        Deployment.environment_id == environment.id,
        Deployment.status == DeploymentStatus.SUCCESS,
    )


async def running_release_candidate(
    session: AsyncSession, environment: Environment
) -> ReleaseCandidate | None:
    """The running version of an environment: the RC of its newest successful deployment."""
    running = await running_deployment(session, environment)
    return running.release_candidate if running is not None else None


async def newest_deployment(session: AsyncSession, environment: Environment) -> Deployment | None:
    return await _newest(session, Deployment.environment_id == environment.id)


async def newest_deployment_of(
    session: AsyncSession, environment: Environment, candidate: ReleaseCandidate
) -> Deployment | None:
    """The newest deployment of one RC in the environment (what a report updates)."""
    return await _newest(
        session,
        Deployment.environment_id == environment.id,
        Deployment.release_candidate_id == candidate.id,
    )


async def active_deployments(session: AsyncSession, environment: Environment) -> list[Deployment]:
    """Deployments of the environment still under way (pending, in_progress, canceling),
    newest first.

    Sorted here, not by the database: with ORDER BY id, SQLite (which keeps no statistics)
    walks the environment's whole history in id order instead of seeking the few active
    rows through the (environment, status) index.
    """
    found = await session.scalars(
        select(Deployment).where(
            Deployment.environment_id == environment.id,
            Deployment.status.in_(ACTIVE_STATUSES),
        )
    )
    return sorted(found, key=lambda deployment: deployment.id, reverse=True)


async def rollback_target(
    session: AsyncSession, environment: Environment, search: TargetSearch
) -> Deployment | None:
    """The newest deployment of the environment `search` matches (the rollback rule's
    target), through the (environment, status, id) index."""
    query = _newest_first(
        Deployment.environment_id == environment.id,
        Deployment.status == DeploymentStatus.SUCCESS,
        Deployment.rolled_back_at.is_(None),
    )
    # A candidate marked bad is never gone back to (bot/domain/policy.py). They are few, and
    # usually none: looked up first (an index seek), the walk down the index stays as it is.
    bad = list(
        await session.scalars(
            select(ReleaseCandidate.id).where(
                ReleaseCandidate.project_id == environment.project_id,
                ReleaseCandidate.rejected_at.is_not(None),
            )
        )
    )
    if bad:
        query = query.where(Deployment.release_candidate_id.not_in(bad))
    if search.excluded_candidate_id is not None:
        query = query.where(Deployment.release_candidate_id != search.excluded_candidate_id)
    return await session.scalar(query.limit(1))


async def deployments_of_candidate_in(
    session: AsyncSession, environment: Environment, candidate_id: int
) -> Sequence[Any]:
    """(id, status, rolled_back_at) of one RC's deployments in the environment.

    Found by (environment, RC) alone, for the caller to filter: given the status too, SQLite
    (no statistics) may take the (environment, status) index and read every success of the
    environment.
    """
    rows = await session.execute(
        select(
            Deployment.id,
            Deployment.status,
            Deployment.rolled_back_at,
        ).where(
            Deployment.environment_id == environment.id,
            Deployment.release_candidate_id == candidate_id,
        )
    )
    return rows.all()


async def mark_rolled_back(session: AsyncSession, ids: Sequence[int], now: datetime) -> None:
    if not ids:
        return
    await session.execute(
        update(Deployment)
        .where(Deployment.id.in_(ids))
        .values(rolled_back_at=now)
        .execution_options(synchronize_session="fetch")
    )


async def insert_deployment(
    session: AsyncSession,
    environment: Environment,
    candidate: ReleaseCandidate,
    *,
    running: ReleaseCandidate | None,
    kind: DeploymentKind,
    status: DeploymentStatus,
    actor: str | None,
    now: datetime,
    error_message: str | None,
) -> Deployment:
    """A new deployment, from `running`, flushed so that it has its id."""
    return await inserted(
        session,
        Deployment(
            environment_id=environment.id,
            environment=environment,
            release_candidate_id=candidate.id,
            release_candidate=candidate,
            from_release_candidate_id=running.id if running is not None else None,
            from_release_candidate=running,
            kind=kind,
            status=status,
            actor=actor,
            deploy_start_at=now,
            deploy_end_at=now if is_final(status) else None,
            updated_at=now,
            error_message=error_message,
        ),
    )


async def deployment_page(
    session: AsyncSession, environment: Environment, page: PageRequest
) -> Page[Deployment]:
    """Deployments of one environment, newest first."""
    return await page_of(session, _newest_first(Deployment.environment_id == environment.id), page)


async def deployment_in(
    session: AsyncSession, environment: Environment, deployment_id: int
) -> Deployment:
    # By id and environment: a deployment is found only under its own environment's URL.
    query = select(Deployment).where(
        Deployment.id == deployment_id, Deployment.environment_id == environment.id
    )
    return await one_or_not_found(session, query, errors.DEPLOYMENT_NOT_FOUND)


async def deployments_of_candidate(
    session: AsyncSession, candidate: ReleaseCandidate
) -> list[Deployment]:
    """Every deployment of one RC, newest first."""
    return list(
        await session.scalars(_newest_first(Deployment.release_candidate_id == candidate.id))
    )


async def stuck_deployments(
    session: AsyncSession, environment: Environment, started_before: datetime
) -> list[Deployment]:
    """The environment's active deployments that started before `started_before`."""
    found = await session.scalars(
        select(Deployment).where(
            Deployment.environment_id == environment.id,
            Deployment.status.in_(ACTIVE_STATUSES),
            # One waiting for approvals is not stuck; its time runs from its last approval.
            or_(Deployment.approvals_required == 0, Deployment.approved_at.is_not(None)),
            func.coalesce(Deployment.approved_at, Deployment.deploy_start_at) < started_before,
        )
    )
    return list(found)


async def succeeded_in_production_before(session: AsyncSession, deployment: Deployment) -> bool:
    """Whether the deployment's candidate succeeded in one of its project's production
    environments before this deployment (a GitHub Release is made on the first)."""
    found = await session.scalar(
        select(Deployment.id)
        .join(Environment, Environment.id == Deployment.environment_id)
        .where(
            Deployment.release_candidate_id == deployment.release_candidate_id,
            Deployment.id != deployment.id,
            Deployment.status == DeploymentStatus.SUCCESS,
            Environment.project_id == deployment.environment.project_id,
            Environment.production.is_(True),
        )
        .limit(1)
    )
    return found is not None


# --- batched reads for the GraphQL face (api/graphql/): one statement per kind of object ---


async def running_deployments(
    session: AsyncSession, environment_ids: Sequence[int]
) -> list[Deployment]:
    """The newest success of each of these environments (what runs there), in one statement:
    per environment one seek of the (environment, status, id) index, however long the
    history."""
    ids = _newest_successes(environment_ids)
    return list(await session.scalars(select(Deployment).where(Deployment.id.in_(ids))))


def _newest_successes(environment_ids: Sequence[int]) -> Select[Any]:
    """The id of each environment's newest success: one seek of the (environment, status,
    id) index per environment."""
    newest = aliased(Deployment)
    newest_success = (
        select(newest.id)
        .where(
            newest.environment_id == Environment.id,
            newest.status == DeploymentStatus.SUCCESS,
        )
        .order_by(newest.id.desc())
        .limit(1)
        .correlate(Environment)
        .scalar_subquery()
    )
    return select(newest_success).where(Environment.id.in_(environment_ids))


@dataclass(frozen=True)
class Running:
    """What runs in an environment and since when, without the rest of its deployment."""

    environment_id: int
    since: datetime
    candidate: ReleaseCandidate


async def running_candidates(
    session: AsyncSession, environment_ids: Sequence[int]
) -> list[Running]:
    """`running_deployments` reduced to the candidate and the time: the same seek per
    environment, and only the candidate (with its release) joined, where a whole deployment
    joins both its candidates, their releases, its environment and that one's project."""
    ids = _newest_successes(environment_ids)
    found = await session.execute(
        select(
            Deployment.environment_id,
            Deployment.deploy_end_at,
            Deployment.updated_at,
            ReleaseCandidate,
        )
        .join(ReleaseCandidate, ReleaseCandidate.id == Deployment.release_candidate_id)
        .where(Deployment.id.in_(ids))
    )
    return [
        Running(environment_id, ended or updated, candidate)
        for environment_id, ended, updated, candidate in found.all()
    ]


async def active_deployments_of(
    session: AsyncSession, environment_ids: Sequence[int]
) -> list[Deployment]:
    """The deployments under way in these environments (few), in any order."""
    found = await session.scalars(
        select(Deployment).where(
            Deployment.environment_id.in_(environment_ids),
            Deployment.status.in_(ACTIVE_STATUSES),
        )
    )
    return list(found)


@dataclass(frozen=True)
class DeploymentFilter:
    """Which deployments a history list shows: any of `statuses` and of `kinds` (empty: all),
    started in [started_after, started_before)."""

    environment_ids: tuple[int, ...] = ()
    release_candidate_id: int | None = None
    statuses: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    started_after: datetime | None = None
    started_before: datetime | None = None


async def deployment_slice(
    session: AsyncSession, shown: DeploymentFilter, before_id: int | None, limit: int
) -> list[Deployment]:
    """Deployments that `shown` lets through, newest first, older than `before_id` (a keyset
    cursor: a page never shifts when new deployments arrive), at most `limit`."""
    where: list[Any] = []
    if shown.environment_ids:
        where.append(Deployment.environment_id.in_(shown.environment_ids))
    if shown.release_candidate_id is not None:
        where.append(Deployment.release_candidate_id == shown.release_candidate_id)
    if shown.statuses:
        where.append(Deployment.status.in_(shown.statuses))
    if shown.kinds:
        where.append(Deployment.kind.in_(shown.kinds))
    if shown.started_after is not None:
        where.append(Deployment.deploy_start_at >= shown.started_after)
    if shown.started_before is not None:
        where.append(Deployment.deploy_start_at < shown.started_before)
    if before_id is not None:
        where.append(Deployment.id < before_id)
    return list(await session.scalars(_newest_first(*where).limit(limit)))
