"""The release policy's cost per deploy: every rule of an environment checked at 1 000 000
deployments, beside the same check at 1 000, in turns.

The history is `bench/history.py`'s (one project, ten environments), with `production`
given every rule: `requires: [staging, canary]` with a soak, three calendar windows (a weekly
weekend, a daily night, a one-off), and approvals. What is timed is `bot/app/policy.py`
`decide` inside a deploy's session, as `operations.deploy` calls it, for:

- a candidate the rules let through (it soaked in both required environments): every rule,
  the order's queries included;
- a candidate refused for the order (it never ran in staging);
- `dev`, which has no policy: the floor (the manual freeze alone).

Target: p50 at most 2 ms per deploy at 1 000 000 deployments, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from bench.common import Row, fresh_database, percentile, print_table
from bench.history import _CYCLE, ENVIRONMENTS, PRODUCTION_LIKE, PROJECT, REPO, HistorySeeder
from bot.app import operations
from bot.app import policy as release_policy
from bot.app.operations import Mirror
from bot.core.errors import DomainError
from bot.domain.policy import Ask, Door
from bot.domain.statuses import DeploymentStatus
from bot.storage.db import Database
from bot.storage.projects import find_environment
from bot.storage.releases import find_release_candidate

SECTION = "policy"
SIZES = (1_000, 1_000_000)
BACKENDS = ("sqlite", "postgresql")
SAMPLES = 400
WARM_UP = 20
TARGET_MS = 2.0
ALLOWED = "allowed, every rule"
REFUSED = "refused for the order"
FLOOR = "no policy (dev)"
CASES = (ALLOWED, REFUSED, FLOOR)
NO_MIRROR = Mirror(enabled=False)

POLICY = """
        requires: [staging, canary]
        soak_minutes: 30
        freezes:
          - {name: weekend, reason: Weekend, timezone: America/New_York,
             rrule: "FREQ=WEEKLY;BYDAY=FR;BYHOUR=17", duration: 64h}
          - {name: night, reason: Night, timezone: Europe/Berlin,
             rrule: "FREQ=DAILY;BYHOUR=23", duration: 1h}
          - {name: holidays, reason: Holidays, timezone: UTC,
             from: "2020-12-23 18:00", until: "2021-01-04 08:00"}
        approvals: {required: 2}"""


def policy_projects_yaml() -> str:
    entries = []
    for name in ENVIRONMENTS:
        entry = f"      - name: {name}\n        deploy_workflow: deploy.yml"
        if name in PRODUCTION_LIKE:
            entry += "\n        production: true"
        if name == "production":
            entry += POLICY
        entries.append(entry)
    environments = "\n".join(entries)
    return f"""
projects:
  - name: {PROJECT}
    repo: {REPO}
    environments:
{environments}
"""


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def _soak_in_required(db: Database, version: str) -> None:
    """`version` deployed to staging and canary and successful there, an hour ago."""
    clock = Clock(datetime.now(UTC) - timedelta(hours=1))
    for environment in ("staging", "canary"):
        async with db.write() as session:
            await operations.deploy(
                session,
                NO_MIRROR,
                project_name=PROJECT,
                environment_name=environment,
                version=version,
                actor="bench",
                clock=clock,
            )
        async with db.write() as session:
            await operations.report_status(
                session,
                NO_MIRROR,
                project_name=PROJECT,
                environment_name=environment,
                version=version,
                status=DeploymentStatus.SUCCESS,
                actor="bench",
                clock=clock,
            )


Check = Callable[[], Awaitable[float]]


def _next_wednesday_noon(after: datetime) -> datetime:
    """A moment in no window of POLICY, after every seeded and soaked deployment."""
    moment = after.replace(hour=12, minute=0, second=0, microsecond=0) + timedelta(days=1)
    return moment + timedelta(days=(2 - moment.weekday()) % 7)


QUIET_MOMENT = _next_wednesday_noon(datetime.now(UTC))


def _checker(db: Database, environment: str, version: str, *, refused: bool) -> Check:
    ask = Ask(actor="bench", door=Door.API)

    async def check() -> float:
        async with db.read() as session:
            env = await find_environment(session, PROJECT, environment)
            candidate = await find_release_candidate(session, env.project, version)
            now = QUIET_MOMENT
            started = time.perf_counter()
            try:
                await release_policy.decide(session, env, candidate, ask, now)
            except DomainError:
                if not refused:
                    raise
            else:
                if refused:
                    raise RuntimeError("the order should have refused")
            return time.perf_counter() - started

    return check


async def _checks(db: Database, seeder: HistorySeeder) -> dict[str, Check]:
    soaked = await seeder.add_candidate()
    await _soak_in_required(db, soaked)
    stranger = await seeder.add_candidate()
    return {
        ALLOWED: _checker(db, "production", soaked, refused=False),
        REFUSED: _checker(db, "production", stranger, refused=True),
        FLOOR: _checker(db, "dev", soaked, refused=False),
    }


async def measure_in_turns(
    targets: list[dict[str, Check]],
) -> list[dict[str, list[float]]]:
    timings: list[dict[str, list[float]]] = [{case: [] for case in CASES} for _ in targets]
    for k in range(WARM_UP + SAMPLES):
        for checks, timed in zip(targets, timings, strict=True):
            for case in CASES:
                elapsed = await checks[case]()
                if k >= WARM_UP:
                    timed[case].append(elapsed)
    return timings


async def _on(backend: str) -> list[Row]:
    async with (
        fresh_database(backend, "policy_base") as base_url,
        fresh_database(backend, "policy") as url,
    ):
        base_db, db = Database.from_url(base_url), Database.from_url(url)
        try:
            seeded = []
            for database, size in ((base_db, SIZES[0]), (db, SIZES[1])):
                started = time.monotonic()
                (seeder,) = await HistorySeeder.create_all(database, policy_projects_yaml(), _CYCLE)
                await seeder.top_up(size)
                await seeder.analyze()
                print(
                    f"  {backend}: {size:,} deployments seeded in "
                    f"{time.monotonic() - started:.0f} s",
                    flush=True,
                )
                seeded.append(await _checks(database, seeder))
            base, large = await measure_in_turns(seeded)
        finally:
            await base_db.dispose()
            await db.dispose()
    rows = []
    for case in CASES:
        p50 = percentile(large[case], 50) * 1000
        context = (
            f"p95 {percentile(large[case], 95) * 1000:.3f} ms, p99 "
            f"{percentile(large[case], 99) * 1000:.3f} ms; beside {SIZES[0]:,}: p50 "
            f"{percentile(base[case], 50) * 1000:.3f} ms"
        )
        rows.append(
            Row(
                SECTION,
                f"{backend} policy check, {case}: p50 at {SIZES[1]:,} deployments",
                round(p50, 3),
                "ms",
                f"<= {TARGET_MS:g}",
                p50 <= TARGET_MS,
                context,
            )
        )
    return rows


async def run() -> list[Row]:
    rows: list[Row] = []
    for backend in BACKENDS:
        rows.extend(await _on(backend))
    return rows


if __name__ == "__main__":
    print_table(asyncio.run(run()))
