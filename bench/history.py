"""History scaling: the same API operations on 1 000, 100 000 and 1 000 000 deployments.

The history is seeded through the storage layer's own engine (see `HistorySeeder`), topped up
from one size to the next in the same database, then `tarmac serve` (no GitHub App: nothing is
mirrored) answers each operation over HTTP, one request at a time, SAMPLES times per size. The
baseline is a second server on a 1 000-deployment database of its own, measured in the same
run and in turns with the larger one (round by round), so the machine's load weighs on both
alike: the target is p50 at 1 000 000 at most twice the baseline's p50, for every operation,
on SQLite and on PostgreSQL. The peak RSS of the
server that answered at 1 000 000 is section 4's figure.

The seeded history: one project with ten environments, deployed to as a real team would: the
busy environments (dev, qa) far more often than production, a new RC every few deployments,
releases of one to five RCs, almost every deployment final (so a rollback cancels nothing old).
Releases and RCs take their ids from the table's sequence (PostgreSQL) or after the largest
(SQLite); deployments, the bulk, are written with the table's indexes dropped and built again
after, by COPY on PostgreSQL and executemany of tuples on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from sqlalchemy import DateTime, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.common import Row, fresh_database, percentile, print_table, tarmac_server
from bot.config.projects_file import parse_projects
from bot.config.projects_sync import sync_projects
from bot.storage.db import Database
from bot.storage.models import Base, Deployment, Environment, Project, Release, ReleaseCandidate

SECTION = "history"
SIZES = (1_000, 100_000, 1_000_000)
BACKENDS = ("sqlite", "postgresql")
TARGET_RATIO = 2.0
TARGET_RSS_MB = 150.0

PROJECT = "Bench"
REPO = "acme/bench"
# Environment -> deployments out of every 50: dev is deployed 12 times for one production.
ENVIRONMENT_WEIGHTS = {
    "dev": 12,
    "qa": 10,
    "test": 8,
    "perf": 5,
    "staging": 5,
    "eu-staging": 3,
    "canary": 3,
    "us-prod": 2,
    "eu-prod": 1,
    "production": 1,
}
ENVIRONMENTS = list(ENVIRONMENT_WEIGHTS)
PRODUCTION_LIKE = {"us-prod", "eu-prod", "production"}


def deployment_cycle(weights: dict[str, int]) -> list[str]:
    """The environments in the order deployments happen within each run of sum(weights)
    (spread, not clustered)."""
    return [
        name
        for _, name in sorted(
            (index / weight, name) for name, weight in weights.items() for index in range(weight)
        )
    ]


_CYCLE = deployment_cycle(ENVIRONMENT_WEIGHTS)

# The wide layout of the GraphQL and dashboard benchmarks: 50 projects of 6 environments.
WIDE_PROJECTS = 50
# Environment -> deployments out of every 40, in the order the projects file lists them.
WIDE_ENVIRONMENT_WEIGHTS = {
    "dev": 12,
    "qa": 10,
    "test": 8,
    "staging": 5,
    "canary": 3,
    "production": 2,
}
WIDE_CYCLE = deployment_cycle(WIDE_ENVIRONMENT_WEIGHTS)


def wide_projects_yaml(count: int = WIDE_PROJECTS) -> str:
    """`count` projects p00, p01, ..., each with the wide layout's environments."""
    lines = ["projects:"]
    for number in range(count):
        lines += [f"  - name: p{number:02d}", f"    repo: acme/p{number:02d}", "    environments:"]
        for name in WIDE_ENVIRONMENT_WEIGHTS:
            production = ", production: true" if name == "production" else ""
            lines.append(f"      - {{name: {name}{production}}}")
    return "\n".join(lines) + "\n"


DEPLOYMENTS_PER_RC = 8
# RCs per release, in turn: most releases ship after one to three candidates, some need five.
RCS_PER_RELEASE = [1, 2, 3, 2, 5, 1, 3, 4, 2, 1]
# Outcomes out of every 20 deployments: mostly successes, as in real life.
STATUS_CYCLE = ["success"] * 15 + ["failure", "failure", "error", "canceled", "success"]
KIND_CYCLE = ["deploy"] * 8 + ["reported"] * 2 + ["deploy"] * 9 + ["rollback"]
SECONDS_BETWEEN_DEPLOYMENTS = 30
# The history ends just before now, whatever its size.
MAX_HISTORY = 2_000_000
BATCH = 50_000

DEPLOYMENT_COLUMNS = [
    "environment_id",
    "release_candidate_id",
    "from_release_candidate_id",
    "kind",
    "status",
    "actor",
    "deploy_start_at",
    "deploy_end_at",
    "updated_at",
    "github_deployment_id",
    "workflow_run_id",
]


def projects_yaml() -> str:
    environments = "\n".join(
        f"      - {{name: {name}, deploy_workflow: deploy.yml"
        + (", production: true" if name in PRODUCTION_LIKE else "")
        + "}"
        for name in ENVIRONMENTS
    )
    return f"""
projects:
  - name: {PROJECT}
    repo: {REPO}
    environments:
{environments}
"""


def rc_version(release_index: int, number: int) -> str:
    return f"v{release_index // 100 + 1}.{release_index % 100}.0-rc{number}"


def _release_plan() -> Iterator[tuple[int, int]]:
    """(release index, RC number) of every RC, in the order they are made."""
    for release_index in itertools.count():
        count = RCS_PER_RELEASE[release_index % len(RCS_PER_RELEASE)]
        for number in range(1, count + 1):
            yield release_index, number


@dataclass
class HistorySeeder:
    """One project's seeded history. `create` seeds the bench project of `projects_yaml`;
    `create_all` one seeder per project of another projects file, deployed to in the order
    of `cycle` (topped up together by `top_up_all`)."""

    db: Database
    project_id: int
    environment_ids: dict[str, int]
    start: datetime
    project: str = PROJECT
    repo: str = REPO
    cycle: list[str] = field(default_factory=lambda: _CYCLE)
    # A new RC every this many of the project's deployments.
    deployments_per_rc: int = DEPLOYMENTS_PER_RC
    deployments: int = 0
    candidate_ids: list[int] = field(default_factory=list)
    candidate_versions: list[str] = field(default_factory=list)
    release_ids: list[int] = field(default_factory=list)
    _plan: Iterator[tuple[int, int]] = field(default_factory=_release_plan)

    @classmethod
    async def create(cls, db: Database) -> HistorySeeder:
        """Migrate, and create the bench project and its environments (as `serve` would)."""
        (seeder,) = await cls.create_all(db, projects_yaml(), _CYCLE)
        return seeder

    @classmethod
    async def create_all(
        cls,
        db: Database,
        projects_file: str,
        cycle: list[str],
        deployments_per_rc: int = DEPLOYMENTS_PER_RC,
    ) -> list[HistorySeeder]:
        """Migrate, create the file's projects and environments (as `serve` would), and one
        seeder for each project, by name, each making a new RC every `deployments_per_rc`
        deployments; every history ends just before now."""
        await db.migrate()
        now = datetime.now(UTC)
        config = parse_projects(yaml.safe_load(projects_file), Path("tarmac.yml"))
        async with db.write() as session:
            await sync_projects(session, config, now)
            found = await session.execute(
                select(Project.id, Project.name, Project.repo, Environment.name, Environment.id)
                .join(Environment, Environment.project_id == Project.id)
                .order_by(Project.name)
            )
            rows = found.all()
        start = now.replace(microsecond=0) - timedelta(
            seconds=SECONDS_BETWEEN_DEPLOYMENTS * MAX_HISTORY
        )
        seeders: dict[int, HistorySeeder] = {}
        for project_id, name, repo, environment, environment_id in rows:
            seeder = seeders.setdefault(
                project_id,
                cls(db, project_id, {}, start, name, repo, cycle, deployments_per_rc),
            )
            seeder.environment_ids[environment] = environment_id
        return list(seeders.values())

    async def top_up(self, total: int) -> None:
        """Insert deployments until the history holds `total` seeded ones."""
        await top_up_all([self], total)

    async def add_candidate(self) -> str:
        """One more RC, which nothing deploys yet (the build that just came in); its version."""
        await self._ensure_candidates(len(self.candidate_ids) + 1)
        return self.candidate_versions[-1]

    async def analyze(self) -> None:
        """Fresh planner statistics, as PostgreSQL's autovacuum would gather after a bulk load
        (SQLite keeps none unless asked, and Tarmac does not ask)."""
        if self.db.is_sqlite:
            return
        async with self.db.engine.connect() as connection:
            await connection.execute(text("ANALYZE"))
            await connection.commit()

    async def _ensure_candidates(self, count: int) -> None:
        missing = count - len(self.candidate_ids)
        if missing <= 0:
            return
        now = datetime.now(UTC)
        planned = list(itertools.islice(self._plan, missing))
        new_releases = sorted({r for r, _ in planned if r >= len(self.release_ids)})
        async with self.db.write() as session:
            connection = await session.connection()
            if new_releases:
                ids = await _reserve_ids(connection, Release.__tablename__, len(new_releases))
                await _insert_rows(
                    connection,
                    Release.__tablename__,
                    ["id", "project_id", "version", "created_at"],
                    [
                        (id_, self.project_id, rc_version(r, 1).removesuffix("-rc1"), now)
                        for id_, r in zip(ids, new_releases, strict=True)
                    ],
                )
                self.release_ids.extend(ids)
            ids = await _reserve_ids(connection, ReleaseCandidate.__tablename__, len(planned))
            versions = [rc_version(r, n) for r, n in planned]
            await _insert_rows(
                connection,
                ReleaseCandidate.__tablename__,
                CANDIDATE_COLUMNS,
                [
                    (
                        id_,
                        self.project_id,
                        self.release_ids[r],
                        version,
                        n,
                        f"{id_:040x}",
                        self.repo,
                        "ready",
                        now,
                    )
                    for id_, (r, n), version in zip(ids, planned, versions, strict=True)
                ],
            )
            self.candidate_ids.extend(ids)
            self.candidate_versions.extend(versions)

    def _deployment(self, i: int, epoch: int) -> tuple[Any, ...]:
        """Deployment `i` of the history, its times in seconds since `epoch`."""
        rc = i // self.deployments_per_rc
        started = epoch + SECONDS_BETWEEN_DEPLOYMENTS * i
        kind = KIND_CYCLE[i % len(KIND_CYCLE)]
        return (
            self.environment_ids[self.cycle[i % len(self.cycle)]],
            self.candidate_ids[rc],
            self.candidate_ids[rc - 1] if rc > 0 else None,
            kind,
            STATUS_CYCLE[i % len(STATUS_CYCLE)],
            "seed@example.com",
            started,
            started + 20,
            started + 20,
            10_000_000 + i,
            None if kind == "reported" else 20_000_000 + i,
        )

    async def _insert_deployments(self, connection: AsyncConnection, first: int, last: int) -> None:
        if self.db.is_sqlite:
            # Times are formatted by SQLite itself, exactly as SQLAlchemy stores a UTC datetime
            # there: far cheaper than a million datetime objects.
            stamp = "strftime('%Y-%m-%d %H:%M:%S', ?, 'unixepoch') || '.000000'"
            values = ", ".join(stamp if k in DATED else "?" for k in range(len(DEPLOYMENT_COLUMNS)))
            epoch = int(self.start.timestamp())
            rows = [self._deployment(i, epoch) for i in range(first, last)]
            await connection.exec_driver_sql(
                f"INSERT INTO deployments ({', '.join(DEPLOYMENT_COLUMNS)}) VALUES ({values})", rows
            )
            return
        start = self.start
        records = [
            row[:6] + tuple(start + timedelta(seconds=s) for s in row[6:9]) + row[9:]
            for row in (self._deployment(i, 0) for i in range(first, last))
        ]
        await _copy(connection, Deployment.__tablename__, DEPLOYMENT_COLUMNS, records)


async def top_up_all(seeders: list[HistorySeeder], total: int) -> None:
    """Insert deployments until each seeder's history holds `total` seeded ones, the projects'
    histories interleaved batch by batch.

    The deployments table's indexes are dropped first and built again at the end: one sort per
    index instead of a million random inserts into each."""
    behind = [seeder for seeder in seeders if seeder.deployments < total]
    if not behind:
        return
    for seeder in behind:
        await seeder._ensure_candidates(-(-total // seeder.deployments_per_rc))
    db = behind[0].db
    async with db.write() as session:
        connection = await session.connection()
        indexes = list(Base.metadata.tables[Deployment.__tablename__].indexes)
        for index in indexes:
            await connection.run_sync(index.drop)
        batch = max(1, BATCH // len(behind))
        for first in range(min(s.deployments for s in behind), total, batch):
            for seeder in behind:
                begin, end = max(first, seeder.deployments), min(total, first + batch)
                if begin < end:
                    await seeder._insert_deployments(connection, begin, end)
        for index in indexes:
            await connection.run_sync(index.create)
    for seeder in behind:
        seeder.deployments = total


def _commit(candidate_id: int) -> tuple[str, str, str]:
    """commit_sha, repo and build_status of a seeded RC."""
    return f"{candidate_id:040x}", REPO, "ready"


# Positions of deploy_start_at, deploy_end_at and updated_at in DEPLOYMENT_COLUMNS.
DATED = {6, 7, 8}
CANDIDATE_COLUMNS = [
    "id",
    "project_id",
    "release_id",
    "version",
    "number",
    "commit_sha",
    "repo",
    "build_status",
    "created_at",
]


async def _reserve_ids(connection: AsyncConnection, table: str, count: int) -> list[int]:
    """`count` new primary keys: from the table's sequence on PostgreSQL (so later inserts
    never collide), after the largest one on SQLite (the caller holds the write lock)."""
    if connection.dialect.name == "sqlite":
        top = int(await connection.scalar(text(f"SELECT coalesce(max(id), 0) FROM {table}")) or 0)
        return list(range(top + 1, top + 1 + count))
    found = await connection.scalars(
        text(f"SELECT nextval('{table}_id_seq') FROM generate_series(1, :n)"), {"n": count}
    )
    return list(found)


async def _copy(
    connection: AsyncConnection, table: str, columns: list[str], rows: list[tuple[Any, ...]]
) -> None:
    """COPY through the engine's asyncpg connection. Foreign keys go unchecked for this
    transaction (the rows are consistent by construction; a check per row would double the
    load time)."""
    raw = await connection.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    await connection.execute(text("SET LOCAL session_replication_role = replica"))
    await driver.copy_records_to_table(table, records=rows, columns=columns)


async def _insert_rows(
    connection: AsyncConnection, table: str, columns: list[str], rows: list[tuple[Any, ...]]
) -> None:
    """Rows of Python values: COPY on PostgreSQL, executemany on SQLite (datetimes in
    SQLAlchemy's storage form)."""
    if connection.dialect.name != "sqlite":
        await _copy(connection, table, columns, rows)
        return
    stored = DateTime().dialect_impl(connection.dialect).bind_processor(connection.dialect)
    assert stored is not None

    def value(v: Any) -> Any:
        return stored(v.astimezone(UTC).replace(tzinfo=None)) if isinstance(v, datetime) else v

    marks = ", ".join("?" for _ in columns)
    await connection.exec_driver_sql(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
        [tuple(value(v) for v in row) for row in rows],
    )


# --- measuring over HTTP ---------------------------------------------------------------------

SAMPLES = 200  # rounds per size; each round PATCHes three times
WARM_UP_ROUNDS = 1
LIST_DEPLOYMENTS = "list deployments (page 1)"
LIST_RELEASES = "list releases"
CREATE_DEPLOYMENT = "create a deployment"
ROLLBACK = "compute-and-create a rollback"
PATCH_STATUS = "PATCH a status"
OPERATIONS = (LIST_DEPLOYMENTS, LIST_RELEASES, CREATE_DEPLOYMENT, ROLLBACK, PATCH_STATUS)


class Client:
    """One keep-alive connection to the server; each call is timed from send to last byte."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self._http = http
        self._base = base
        self._headers = {"Authorization": f"Bearer {token}"}
        self.timings: dict[str, list[float]] = {name: [] for name in OPERATIONS}

    async def call(
        self, operation: str, method: str, path: str, expect: int, body: Any = None
    ) -> Any:
        started = time.perf_counter()
        async with self._http.request(
            method, self._base + path, json=body, headers=self._headers
        ) as reply:
            answer = await reply.json()
            elapsed = time.perf_counter() - started
            if reply.status != expect:
                raise RuntimeError(f"{method} {path}: {reply.status} {answer}")
        self.timings[operation].append(elapsed)
        return answer


async def _one_round(client: Client, environment: str, version: str) -> None:
    """Each operation once on `environment`, as a deploy goes: list, deploy `version`, report
    it running then successful, roll back, report the rollback successful."""
    where = f"/api/releases/{PROJECT}/environments/{environment}"
    await client.call(LIST_DEPLOYMENTS, "GET", f"{where}/deployments", 200)
    await client.call(LIST_RELEASES, "GET", f"/api/releases/{PROJECT}/releases", 200)
    deploy = {"release_candidate_version": version}
    await client.call(CREATE_DEPLOYMENT, "POST", f"{where}/deployments", 201, deploy)
    for status in ("in_progress", "success"):
        report = {"release_candidate_version": version, "status": status}
        await client.call(PATCH_STATUS, "PATCH", f"{where}/deployments", 200, report)
    rolled = await client.call(ROLLBACK, "POST", f"{where}/rollback", 201)
    report = {"release_candidate_version": rolled["release_candidate_version"], "status": "success"}
    await client.call(PATCH_STATUS, "PATCH", f"{where}/deployments", 200, report)


@dataclass(frozen=True)
class Target:
    url: str
    token: str
    versions: list[str]


async def measure_side_by_side(targets: list[Target]) -> list[dict[str, list[float]]]:
    """SAMPLES rounds over the environments in turn, each deploying one of the newest RCs,
    the servers taking turns round by round: a burst of load on the shared machine lands on
    the baseline as much as on the server measured against it."""
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for target in targets:
            http = await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
            )
            warm = Client(http, target.url, target.token)
            for k in range(WARM_UP_ROUNDS):
                await _one_round(warm, ENVIRONMENTS[k % len(ENVIRONMENTS)], target.versions[-1])
            clients.append((Client(http, target.url, target.token), target.versions))
        for k in range(SAMPLES):
            for client, versions in clients:
                await _one_round(client, ENVIRONMENTS[k % len(ENVIRONMENTS)], versions[-1 - k % 25])
    return [client.timings for client, _ in clients]


@dataclass
class SizeResult:
    size: int
    seed_seconds: float
    timings: dict[str, list[float]]
    baseline: dict[str, list[float]]  # the smallest history's, measured alongside
    peak_rss_mb: float


async def _history_on(backend: str, sizes: tuple[int, ...]) -> list[SizeResult]:
    """The smallest size in a database of its own, served next to each larger size (topped
    up in one database) and measured alongside it."""
    results = []
    async with (
        fresh_database(backend, "history_base") as base_url,
        fresh_database(backend, "history") as url,
    ):
        base_db, db = Database.from_url(base_url), Database.from_url(url)
        try:
            base = await HistorySeeder.create(base_db)
            await base.top_up(sizes[0])
            await base.analyze()
            seeder = await HistorySeeder.create(db)
            with tempfile.TemporaryDirectory(prefix="tarmac-history-") as scratch:
                config = Path(scratch) / "tarmac.yml"
                config.write_text(projects_yaml())
                async with tarmac_server(base_url, config=config, github_app=False) as baseline:
                    base_target = Target(baseline.url, baseline.api_token, base.candidate_versions)
                    # The smallest size is the baseline's own: only the larger ones are served.
                    for size in sizes[1:]:
                        results.append(
                            await _one_size(backend, size, seeder, url, config, base_target)
                        )
        finally:
            await base_db.dispose()
            await db.dispose()
    return results


async def _one_size(
    backend: str, size: int, seeder: HistorySeeder, url: str, config: Path, baseline: Target
) -> SizeResult:
    started = time.monotonic()
    await seeder.top_up(size)
    await seeder.analyze()
    seeded = time.monotonic() - started
    print(f"  {backend}: {size:,} deployments seeded in {seeded:.0f} s", flush=True)
    async with tarmac_server(url, config=config, github_app=False) as server:
        target = Target(server.url, server.api_token, seeder.candidate_versions)
        timings, alongside = await measure_side_by_side([target, baseline])
        rss = server.peak_rss_mb()
    return SizeResult(size, seeded, timings, alongside, rss)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def rows_for(backend: str, results: list[SizeResult], baseline_size: int) -> list[Row]:
    """Per operation: p50 at the largest size over p50 at the smallest measured alongside it
    (the target), with every size's p50/p99 as context; then the peak RSS at the largest size."""
    top = results[-1]
    rows = []
    for operation in OPERATIONS:
        p50 = {r.size: percentile(r.timings[operation], 50) for r in results}
        p99 = {r.size: percentile(r.timings[operation], 99) for r in results}
        beside = {r.size: percentile(r.baseline[operation], 50) for r in results}
        ratio = p50[top.size] / beside[top.size]
        context = "; ".join(
            f"{r.size:,}: p50 {_ms(p50[r.size])} ms (beside {baseline_size:,}: "
            f"{_ms(beside[r.size])}), p99 {_ms(p99[r.size])} ms"
            for r in results
        )
        rows.append(
            Row(
                SECTION,
                f"{backend} {operation}: p50 {top.size:,} / p50 {baseline_size:,}",
                round(ratio, 2),
                "x",
                f"<= {TARGET_RATIO:g}",
                ratio <= TARGET_RATIO,
                context,
            )
        )
    seeded = ", ".join(f"{r.size:,} in {r.seed_seconds:.0f} s" for r in results)
    rows.append(
        Row(
            "memory",
            f"{backend} peak RSS of tarmac serve, {top.size:,} deployments",
            round(top.peak_rss_mb, 1),
            "MiB",
            f"<= {TARGET_RSS_MB:g}",
            top.peak_rss_mb <= TARGET_RSS_MB,
            f"seeded {seeded}",
        )
    )
    return rows


async def run(sizes: tuple[int, ...] = SIZES) -> list[Row]:
    rows: list[Row] = []
    for backend in BACKENDS:
        rows.extend(rows_for(backend, await _history_on(backend, sizes), sizes[0]))
    return rows


if __name__ == "__main__":
    import sys

    chosen = tuple(int(a) for a in sys.argv[1:]) or SIZES
    print_table(asyncio.run(run(chosen)))
