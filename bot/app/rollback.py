"""The rollback rule: which RC an environment goes back to, and doing it.

1. An environment with no deployment has nothing to roll back from.
2. A frozen environment is rolled back only with `force`, checked before anything changes.
3. The target: when the newest deployment succeeded, the newest successfully deployed RC
   that is neither the running one nor one an earlier rollback rolled away from (so rolling
   back twice goes back two versions, never forward again); otherwise (the newest deployment
   failed, errored, was canceled or is still under way) the running RC is deployed again —
   unless a rollback rolled away from it, as when a second rollback is asked for while the
   first is still under way: then the first one's target, the newest successful RC no
   rollback rolled away from, is deployed again (a double click never goes forward).
   The RC rolled away from, the newest deployment's, is remembered as rolled back here
   (unless it is the target itself).
4. A `rollback` deployment of the target is created, `pending`, and every active deployment
   of the environment is canceled ("Canceled by a rollback"), in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.deployments import newest_deployment, record_deployment
from bot.core import errors
from bot.core.clock import Clock
from bot.domain.freeze import ensure_not_frozen
from bot.domain.statuses import DeploymentKind, DeploymentStatus
from bot.storage.models import Deployment, Environment, ReleaseCandidate
from bot.storage.projects import ensure_accepts_deployments, find_environment

CANCELED_BY_ROLLBACK = "Canceled by a rollback"


async def rollback_target(
    session: AsyncSession, environment: Environment, newest: Deployment
) -> ReleaseCandidate | None:
    """The RC a rollback deploys, given the environment's newest deployment (rule 3)."""
    query = (
        select(Deployment)
        .where(
            Deployment.environment_id == environment.id,
            Deployment.status == DeploymentStatus.SUCCESS,
            Deployment.rolled_back_at.is_(None),
        )
        .order_by(Deployment.id.desc())
        .limit(1)
    )
    if newest.status == DeploymentStatus.SUCCESS:
        # The newest deployment is what runs: go back from it.
        query = query.where(Deployment.release_candidate_id != newest.release_candidate_id)
    target = await session.scalar(query)
    return target.release_candidate if target is not None else None


@dataclass(frozen=True)
class Rollback:
    deployment: Deployment
    canceled: list[Deployment]
    rolled_back_from: ReleaseCandidate


async def roll_back(
    session: AsyncSession,
    *,
    project_name: str,
    environment_name: str,
    actor: str | None,
    force: bool,
    clock: Clock,
) -> Rollback:
    environment = await find_environment(session, project_name, environment_name, lock=True)
    now = clock()  # once locked, as in bot.app.deployments
    newest = await newest_deployment(session, environment)
    if newest is None:
        raise errors.not_found(errors.NOTHING_TO_ROLL_BACK_TO)
    ensure_not_frozen(environment, now, force=force)
    ensure_accepts_deployments(environment)
    target = await rollback_target(session, environment, newest)
    if target is None:
        raise errors.not_found(errors.NOTHING_TO_ROLL_BACK_TO)

    rolled_back_from = newest.release_candidate
    if rolled_back_from.id != target.id:
        await _remember_rolled_back(session, environment, rolled_back_from, now)
    # Every active deployment is older than the rollback, so superseding cancels them all.
    new = await record_deployment(
        session,
        environment,
        target,
        kind=DeploymentKind.ROLLBACK,
        status=DeploymentStatus.PENDING,
        actor=actor,
        now=now,
        superseded_because=CANCELED_BY_ROLLBACK,
    )
    return Rollback(
        deployment=new.deployment, canceled=list(new.superseded), rolled_back_from=rolled_back_from
    )


async def _remember_rolled_back(
    session: AsyncSession, environment: Environment, candidate: ReleaseCandidate, now: datetime
) -> None:
    """Mark the successes of `candidate` here so no later rollback goes forward to them.

    The candidate's deployments here are found by (environment, RC) alone and filtered here:
    given the status too, SQLite (no statistics) may take the (environment, status) index
    and read every success of the environment.
    """
    deployed = await session.execute(
        select(Deployment.id, Deployment.status, Deployment.rolled_back_at).where(
            Deployment.environment_id == environment.id,
            Deployment.release_candidate_id == candidate.id,
        )
    )
    ids = [
        row.id
        for row in deployed
        if row.status == DeploymentStatus.SUCCESS and row.rolled_back_at is None
    ]
    if ids:
        await session.execute(
            update(Deployment)
            .where(Deployment.id.in_(ids))
            .values(rolled_back_at=now)
            .execution_options(synchronize_session="fetch")
        )
