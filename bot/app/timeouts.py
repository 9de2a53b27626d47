"""Work that never reports back ends after a timeout: deployments with no final status become
`error` after their environment's timeout, builds with no result fail after their project's,
so nothing is shown as deploying or building forever."""

from __future__ import annotations

import asyncio
import logging

from bot.app.operations import Mirror, expire_stuck, finish_build
from bot.core.clock import Clock
from bot.core.log_context import log_context
from bot.domain.candidates import build_timed_out
from bot.domain.statuses import BuildStatus
from bot.storage.db import Database
from bot.storage.environments import environments_deploying, locked_environment
from bot.storage.releases import candidates_building, locked_candidate

log = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 30.0
BUILD_TIMED_OUT_MESSAGE = "Build timed out: no result after {minutes} minutes"


async def sweep_stuck_deployments(db: Database, clock: Clock, mirror: Mirror) -> int:
    """One pass over the environments with active deployments; returns how many expired."""
    async with db.read() as session:
        environment_ids = await environments_deploying(session)
    expired = 0
    for environment_id in environment_ids:
        async with db.write() as session:
            environment = await locked_environment(session, environment_id)
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


async def sweep_stuck_builds(db: Database, clock: Clock, mirror: Mirror) -> int:
    """Fail every build still under way its project's `build.timeout_minutes` after its RC was
    made; returns how many failed. A run that finishes later changes nothing: the RC stays
    failed, as a timed-out deployment stays `error`."""
    now = clock()
    async with db.read() as session:
        building = await candidates_building(session)
    stuck = [b for b in building if build_timed_out(b.created_at, b.timeout_minutes, now)]
    failed = 0
    for build in stuck:
        async with db.write() as session:
            candidate = await locked_candidate(session, build.candidate_id)
            if candidate is None or candidate.build_status != BuildStatus.BUILDING:
                continue
            message = BUILD_TIMED_OUT_MESSAGE.format(minutes=build.timeout_minutes)
            await finish_build(
                session, mirror, candidate, succeeded=False, run_url=None, now=now, error=message
            )
            with log_context(project=build.project, release_candidate=candidate.version):
                log.warning("release candidate %s: %s", candidate.version, message)
            failed += 1
    return failed


async def run_timeout_sweeper(
    db: Database, clock: Clock, mirror: Mirror, interval: float = SWEEP_INTERVAL_SECONDS
) -> None:
    while True:
        for sweep in (sweep_stuck_deployments, sweep_stuck_builds):
            try:
                await sweep(db, clock, mirror)
            except Exception:
                log.exception("%s failed; retrying in %.0f s", sweep.__name__, interval)
        await asyncio.sleep(interval)
