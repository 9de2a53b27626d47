"""GraphQL: the composite query over 50 projects x 6 environments at 1 000 000 deployments.

"For every project, what runs in production, since when, which candidate is waiting in
staging, and how many pull requests would it ship": the query text is tests/test_graphql.py's
`COMPOSITE_QUERY`, the one its test answers in one request.

bench.history's `HistorySeeder` seeds 50 projects (`acme/p00` ... `acme/p49`) of six
environments each, 20 000 deployments per project (1 000 000 in all, dev deployed six times
for one production), SQLite and PostgreSQL. For every project whose staging runs another
candidate than production, a complete change report between the two is stored through
`bot.storage.change_reports` (as the worker stores one), 5 to 40 pull requests each, so every
`pullRequestCount` has a value and no answer asks GitHub. `tarmac serve` (no GitHub App: stored
reports need none) answers the query over HTTP, one request at a time, in turns with a server
on a database of the same 50 x 6 layout and 1 000 deployments (the baseline). Every answer is
checked: 50 projects, no errors, each project's versions and pull request count as seeded.

The statements one request sends cannot be counted from outside `tarmac serve`: they are
counted in-process, the app (api.app.create_app) on loopback against the same seeded database,
with SQLAlchemy's `before_cursor_execute`, as tests/test_graphql.py counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from api.app import create_app
from api.keys import SERVICE
from bench.changes import realistic_report
from bench.common import Row, fresh_database, percentile, print_table, query_int, tarmac_server
from bench.history import (
    WIDE_CYCLE,
    WIDE_ENVIRONMENT_WEIGHTS,
    WIDE_PROJECTS,
    HistorySeeder,
    top_up_all,
    wide_projects_yaml,
)
from bot.domain.changes import PathFilter
from bot.settings import Settings
from bot.storage import tokens
from bot.storage.change_reports import ask_for_report, store_report
from bot.storage.db import Database
from bot.storage.deployments import running_deployments
from bot.storage.models import ReleaseCandidate
from tests.test_graphql import COMPOSITE_QUERY, counted_statements

SECTION = "graphql"
PROJECTS = WIDE_PROJECTS
ENVIRONMENT_WEIGHTS = WIDE_ENVIRONMENT_WEIGHTS
CYCLE = WIDE_CYCLE
DEPLOYMENTS = 1_000_000
BASELINE = 1_000
BACKENDS = ("sqlite", "postgresql")
SAMPLES = 300
WARM_UP = 20
TARGET_P50_MS = 50.0
GRAPHQL = "/api/graphql"


def pull_requests_of(index: int) -> int:
    """How many pull requests project `index`'s staging candidate would ship: 5 to 40."""
    return 5 + (index * 13) % 36


@dataclass(frozen=True)
class Expected:
    """What one project's node must say."""

    production: str | None
    staging: str | None
    pull_requests: int | None


async def _running_of(db: Database, seeder: HistorySeeder) -> dict[str, ReleaseCandidate]:
    wanted = [seeder.environment_ids["production"], seeder.environment_ids["staging"]]
    async with db.read() as session:
        found = await running_deployments(session, wanted)
    names = {i: name for name, i in seeder.environment_ids.items()}
    return {names[d.environment_id]: d.release_candidate for d in found}


async def store_reports(db: Database, seeders: list[HistorySeeder]) -> dict[str, Expected]:
    """A complete report from production's candidate to staging's, for every project where
    they differ; what each project's node must then say."""
    expected: dict[str, Expected] = {}
    now = datetime.now(UTC)
    for index, seeder in enumerate(seeders):
        running = await _running_of(db, seeder)
        production, staging = running.get("production"), running.get("staging")
        count: int | None = None
        if production is not None and staging is not None:
            count = 0
            if production.commit_sha != staging.commit_sha:
                count = pull_requests_of(index)
                report = realistic_report(
                    production.commit_sha, staging.commit_sha, 2 * count, count, seeder.repo
                )
                async with db.write() as session:
                    base, head, paths = production.commit_sha, staging.commit_sha, PathFilter()
                    await ask_for_report(session, seeder.repo, base, head, paths, now)
                    await store_report(session, seeder.repo, paths, report, github_calls=3, now=now)
        expected[seeder.project] = Expected(
            production.version if production else None,
            staging.version if staging else None,
            count,
        )
    return expected


async def seeded(url: str, deployments: int) -> tuple[dict[str, Expected], float]:
    """The 50 x 6 layout with `deployments` in all and its reports; the seconds it took."""
    started = time.monotonic()
    db = Database.from_url(url)
    try:
        seeders = await HistorySeeder.create_all(db, wide_projects_yaml(), CYCLE)
        await top_up_all(seeders, deployments // len(seeders))
        await seeders[0].analyze()
        expected = await store_reports(db, seeders)
    finally:
        await db.dispose()
    if sum(e.pull_requests or 0 for e in expected.values()) == 0:
        raise RuntimeError("no project's staging runs another candidate than production's")
    return expected, time.monotonic() - started


def check(answer: Any, expected: dict[str, Expected]) -> None:
    """RuntimeError unless the answer says, for every project, what was seeded."""
    if not isinstance(answer, dict) or "errors" in answer:
        raise RuntimeError(f"the composite query answered {str(answer)[:300]}")
    nodes = answer["data"]["projects"]["nodes"]
    said = {
        node["name"]: Expected(
            (node["production"]["runningCandidate"] or {}).get("version"),
            (node["staging"]["runningCandidate"] or {}).get("version"),
            ((node["staging"]["runningCandidate"] or {}).get("changes") or {}).get(
                "pullRequestCount"
            ),
        )
        for node in nodes
    }
    if said != expected:
        wrong = sorted(name for name in expected if said.get(name) != expected[name])
        raise RuntimeError(f"the composite query's answer differs for {wrong[:5]}")


@dataclass(frozen=True)
class Target:
    url: str
    token: str
    expected: dict[str, Expected]


async def _timed(http: aiohttp.ClientSession, target: Target) -> float:
    started = time.perf_counter()
    async with http.post(
        target.url + GRAPHQL,
        json={"query": COMPOSITE_QUERY},
        headers={"Authorization": f"Bearer {target.token}"},
    ) as reply:
        answer = await reply.json()
        elapsed = time.perf_counter() - started
    if reply.status != 200:
        raise RuntimeError(f"POST {GRAPHQL}: {reply.status} {str(answer)[:300]}")
    check(answer, target.expected)
    return elapsed


async def measure_in_turns(targets: list[Target]) -> list[list[float]]:
    """WARM_UP requests to each, then SAMPLES rounds in which each target answers once, in
    turn: a burst of load on the shared machine lands on the baseline as much."""
    timings: list[list[float]] = [[] for _ in targets]
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
            )
            for _ in targets
        ]
        for _ in range(WARM_UP):
            for http, target in zip(sessions, targets, strict=True):
                await _timed(http, target)
        for _ in range(SAMPLES):
            for http, target, found in zip(sessions, targets, timings, strict=True):
                found.append(await _timed(http, target))
    return timings


async def statements_per_request(url: str, config: Path, expected: dict[str, Expected]) -> int:
    """The SQL statements one composite request sends, counted in the app itself (on
    loopback, on the seeded database), after a first request has noted the token's use."""
    app = create_app(Settings(database_url=url, config=config), background_work=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        db = app[SERVICE].db
        async with db.write() as session:
            secret = await tokens.create_token(
                session, name="bench-count", projects=[], actor_email=None, now=datetime.now(UTC)
            )
        target = Target(base, secret, expected)
        async with aiohttp.ClientSession() as http:
            await _timed(http, target)
            with counted_statements(db) as seen:
                await _timed(http, target)
        return len(seen)
    finally:
        await runner.cleanup()


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _spread(values: list[float]) -> str:
    return "/".join(f"{_ms(percentile(values, p))}" for p in (50, 95, 99))


@dataclass
class Measured:
    timings: list[float]
    beside: list[float]
    statements: int
    statements_beside: int
    seed_seconds: float


async def measure_on(backend: str, size: int = DEPLOYMENTS) -> Measured:
    async with (
        fresh_database(backend, "graphql_base") as base_url,
        fresh_database(backend, "graphql") as url,
    ):
        base_expected, _ = await seeded(base_url, BASELINE)
        expected, seconds = await seeded(url, size)
        print(f"  {backend}: {size:,} deployments seeded in {seconds:.0f} s", flush=True)
        counted = await query_int(url, "SELECT count(*) FROM deployments")
        if counted != size:
            raise RuntimeError(f"{counted:,} deployments in the database, not {size:,}")
        with tempfile.TemporaryDirectory(prefix="tarmac-graphql-") as scratch:
            config = Path(scratch) / "tarmac.yml"
            config.write_text(wide_projects_yaml())
            statements = await statements_per_request(url, config, expected)
            statements_beside = await statements_per_request(base_url, config, base_expected)
            async with (
                tarmac_server(url, config=config, github_app=False) as big,
                tarmac_server(base_url, config=config, github_app=False) as baseline,
            ):
                timings, beside = await measure_in_turns(
                    [
                        Target(big.url, big.api_token, expected),
                        Target(baseline.url, baseline.api_token, base_expected),
                    ]
                )
    return Measured(timings, beside, statements, statements_beside, seconds)


def rows_for(backend: str, measured: Measured, size: int = DEPLOYMENTS) -> list[Row]:
    p50 = percentile(measured.timings, 50) * 1000
    layout = f"{PROJECTS} projects x {len(ENVIRONMENT_WEIGHTS)} environments"
    same = measured.statements == measured.statements_beside
    return [
        Row(
            SECTION,
            f"{backend} composite query, {layout}, {size:,} deployments: p50",
            round(p50, 2),
            "ms",
            f"<= {TARGET_P50_MS:g} ms",
            p50 <= TARGET_P50_MS,
            f"p50/p95/p99 {_spread(measured.timings)} ms; beside {BASELINE:,}: "
            f"{_spread(measured.beside)} ms; {SAMPLES} each; seeded in "
            f"{measured.seed_seconds:.0f} s",
        ),
        Row(
            SECTION,
            f"{backend} composite query: SQL statements per request, {size:,} deployments",
            measured.statements,
            "statements",
            f"= at {BASELINE:,} (bounded)",
            same,
            f"at {BASELINE:,}: {measured.statements_beside}",
        ),
    ]


async def run() -> list[Row]:
    rows: list[Row] = []
    for backend in BACKENDS:
        rows.extend(rows_for(backend, await measure_on(backend)))
    return rows


if __name__ == "__main__":
    print_table(asyncio.run(run()))
