"""Deployments that never report a final status become `error` after their environment's
timeout, so an environment is never shown as deploying forever."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from bot.clock import Clock
from bot.db import Database
from bot.log_context import log_context
from bot.models import Deployment, Environment
from bot.operations import Mirror, expire_stuck
from bot.statuses import ACTIVE_STATUSES

log = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 30.0


async def sweep_stuck_deployments(db: Database, clock: Clock, mirror: Mirror) -> int:
    """One pass over the environments with active deployments; returns how many expired."""
    async with db.read() as session:
        environment_ids = list(
            await session.scalars(
                select(Environment.id).where(
                    select(Deployment.id)
                    .where(
                        Deployment.environment_id == Environment.id,
                        Deployment.status.in_(ACTIVE_STATUSES),
                    )
                    .exists()
                )
            )
        )
    expired = 0
    for environment_id in environment_ids:
        async with db.write() as session:
            environment = await session.scalar(
                select(Environment)
                .where(Environment.id == environment_id)
                .with_for_update(of=Environment)
            )
            if environment is None:
                continue
            for deployment in await expire_stuck(session, mirror, environment, clock()):
                with log_context(
                    project=environment.project.name,
                    environment=environment.name,
                    deployment_id=deployment.id,
                    release_candidate=deployment.release_candidate.version,
                ):
                    log.warning(
                        "deployment %d to %s timed out after %d minutes",
                        deployment.id,
                        environment.name,
                        environment.timeout_minutes,
                    )
                expired += 1
    return expired


async def run_stuck_deployment_sweeper(
    db: Database, clock: Clock, mirror: Mirror, interval: float = SWEEP_INTERVAL_SECONDS
) -> None:
    while True:
        try:
            await sweep_stuck_deployments(db, clock, mirror)
        except Exception:
            log.exception("stuck-deployment sweep failed; retrying in %.0f s", interval)
        await asyncio.sleep(interval)
