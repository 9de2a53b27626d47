"""The dashboard's pages at 1 000 000 deployments and 10 000 candidates, 50 projects x 6
environments, SQLite and PostgreSQL.

bench.history's `HistorySeeder` seeds 50 projects (`acme/p00` ... `acme/p49`) of six
environments each, 20 000 deployments per project (dev deployed six times for one production),
a new candidate every 100 of a project's deployments (10 000 in all), then one more candidate
in p00 that nothing runs yet (the build that just came in), with a complete change report
(50 commits, 20 pull requests, as `bench.changes` stores one) from what runs in each of p00's
environments to it, so its page renders six reports and asks GitHub for nothing.

`tarmac serve` (no GitHub App) answers; the bench signs in through the real sign-in form with
an API token (GET /sign-in for the nonce cookie, POST the form, keep the session cookie) and
then GETs each page one at a time, WARM_UP times, then SAMPLES rounds in which the 1 000 000
server and a baseline server (the same 50 x 6 layout with 1 000 deployments, a new candidate
every 4) answer each page in turn, so a burst of load on the shared machine lands on both.
Timed from send to the last byte; every answer is checked (200, and what the page must show).

Pages: the overview `/` twice, first with its cache missed (the first request after a change:
the bench moves the change mark just before it, untimed, by giving a deployment nobody sees a
new `updated_at`, as a status report to it would; the server reads and renders the region
afresh), then cached (the mark has not moved since); p00's dev environment, its first page and
page 500 of its history (dev holds 6 000 of p00's deployments: 600 pages of ten); the new
candidate's page; and the event stream's time to its first event (opened on a stale mark, so
it starts with one).

`TARMAC_BENCH_DASHBOARD_BEFORE=<a checkout of Tarmac>` adds, beside each server, one running
that checkout's code (its `bot` and `api` first on PYTHONPATH, this checkout's environment) on
the same database, taking its turn in every round: before and after, measured in one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from sqlalchemy import func, select, update

from bench.changes import _SUBJECTS, realistic_report
from bench.common import (
    Row,
    Server,
    fresh_database,
    percentile,
    print_table,
    query_int,
    tarmac_server,
)
from bench.history import (
    WIDE_CYCLE,
    WIDE_ENVIRONMENT_WEIGHTS,
    WIDE_PROJECTS,
    HistorySeeder,
    top_up_all,
    wide_projects_yaml,
)
from bot.domain.changes import PathFilter
from bot.storage.change_reports import ask_for_report, store_report
from bot.storage.dashboard import running_deployments
from bot.storage.db import Database
from bot.storage.models import Deployment, Environment, Project

SECTION = "dashboard"
PROJECTS = WIDE_PROJECTS
ENVIRONMENT_WEIGHTS = WIDE_ENVIRONMENT_WEIGHTS
CYCLE = WIDE_CYCLE
DEPLOYMENTS = 1_000_000
CANDIDATES = 10_000
BASELINE = 1_000
BASELINE_DEPLOYMENTS_PER_RC = 4
BACKENDS = ("sqlite", "postgresql")
SAMPLES = int(os.environ.get("TARMAC_BENCH_DASHBOARD_SAMPLES", "200"))
WARM_UP = 20
TARGET_P95_MS = 150.0
PROJECT = "p00"
ENVIRONMENT = "dev"
DEEP_PAGE = 500
# A checkout whose code runs beside this one's, for before/after figures from one run.
BEFORE = os.environ.get("TARMAC_BENCH_DASHBOARD_BEFORE")

OVERVIEW_MISS = "overview / (cache missed)"
OVERVIEW = "overview / (cached)"
ENVIRONMENT_FIRST = "environment, page 1"
ENVIRONMENT_DEEP = f"environment, page {DEEP_PAGE}"
CANDIDATE = "candidate (6 change reports)"
EVENTS = "event stream: first event"
# The missed overview first: the cached one after it finds the region it rendered.
PAGES = (OVERVIEW_MISS, OVERVIEW, ENVIRONMENT_FIRST, ENVIRONMENT_DEEP, CANDIDATE, EVENTS)


async def store_reports(db: Database, seeder: HistorySeeder, version: str) -> int:
    """A complete report from what runs in each of the seeder's environments to its candidate
    `version` (the newest), stored as the worker stores one; how many were stored."""
    head = f"{seeder.candidate_ids[-1]:040x}"
    async with db.read() as session:
        running = await running_deployments(session, list(seeder.environment_ids.values()))
    bases = {f"{d.release_candidate_id:040x}" for d in running.values()}
    now = datetime.now(UTC)
    paths = PathFilter()
    for base in sorted(bases):
        async with db.write() as session:
            await ask_for_report(session, seeder.repo, base, head, paths, now)
            report = realistic_report(base, head)
            await store_report(session, seeder.repo, paths, report, github_calls=3, now=now)
    return len(bases)


@dataclass(frozen=True)
class Seeded:
    version: str  # the new candidate's
    reports: int
    seconds: float


async def seeded(url: str, deployments: int, deployments_per_rc: int) -> Seeded:
    started = time.monotonic()
    db = Database.from_url(url)
    try:
        seeders = await HistorySeeder.create_all(
            db, wide_projects_yaml(), CYCLE, deployments_per_rc
        )
        await top_up_all(seeders, deployments // len(seeders))
        seeder = next(s for s in seeders if s.project == PROJECT)
        version = await seeder.add_candidate()
        await seeders[0].analyze()
        reports = await store_reports(db, seeder, version)
    finally:
        await db.dispose()
    return Seeded(version, reports, time.monotonic() - started)


# --- measuring over HTTP ---------------------------------------------------------------------


class MarkMover:
    """Moves a database's change mark: the oldest success of p00's dev (never shown, dev has
    newer ones) gets an `updated_at` after every other deployment's, a millisecond later each
    time, so the server's next page sees a new mark and misses its cache."""

    def __init__(self, db: Database, deployment_id: int, after: datetime) -> None:
        self.db = db
        self.deployment_id = deployment_id
        self.next_at = after

    @classmethod
    @contextlib.asynccontextmanager
    async def on(cls, url: str) -> AsyncIterator[MarkMover]:
        db = Database.from_url(url)
        try:
            async with db.read() as session:
                dev = (
                    select(Environment.id)
                    .join(Project, Project.id == Environment.project_id)
                    .where(Project.name == PROJECT, Environment.name == ENVIRONMENT)
                    .scalar_subquery()
                )
                oldest = await session.scalar(
                    select(func.min(Deployment.id)).where(
                        Deployment.environment_id == dev, Deployment.status == "success"
                    )
                )
                newest_change = await session.scalar(select(func.max(Deployment.updated_at)))
            if oldest is None or newest_change is None:
                raise RuntimeError(f"no success in {PROJECT}/{ENVIRONMENT} to move the mark with")
            if isinstance(newest_change, str):  # SQLite hands MAX() of a datetime back as text
                newest_change = datetime.fromisoformat(newest_change).replace(tzinfo=UTC)
            yield cls(db, oldest, newest_change + timedelta(seconds=1))
        finally:
            await db.dispose()

    async def move(self) -> None:
        async with self.db.write() as session:
            await session.execute(
                update(Deployment)
                .where(Deployment.id == self.deployment_id)
                .values(updated_at=self.next_at)
            )
        self.next_at += timedelta(milliseconds=1)


@dataclass(frozen=True)
class Target:
    url: str
    seeded: Seeded
    http: aiohttp.ClientSession
    mover: MarkMover

    def path(self, page: str) -> str:
        environment = f"/projects/{PROJECT}/environments/{ENVIRONMENT}"
        return {
            OVERVIEW_MISS: "/",
            OVERVIEW: "/",
            ENVIRONMENT_FIRST: environment,
            ENVIRONMENT_DEEP: f"{environment}?page={DEEP_PAGE}",
            CANDIDATE: f"/projects/{PROJECT}/candidates/{self.seeded.version}",
            EVENTS: "/dashboard/events?since=stale",
        }[page]


def _checks(target: Target) -> dict[str, Callable[[str], bool]]:
    """What each page's body must hold."""

    def overview(body: str) -> bool:
        return all(f"p{n:02d}" in body for n in range(PROJECTS))

    return {
        OVERVIEW_MISS: overview,
        OVERVIEW: overview,
        ENVIRONMENT_FIRST: lambda body: "seed@example.com" in body,
        ENVIRONMENT_DEEP: lambda body: "<table" in body or "deployments" in body,
        CANDIDATE: lambda body: (
            body.count(_SUBJECTS[0]) >= target.seeded.reports and target.seeded.version in body
        ),
    }


async def sign_in(http: aiohttp.ClientSession, url: str, token: str) -> None:
    """Through the real form: its nonce (a cookie and a hidden field), then POST the token;
    the session cookie stays in the jar."""
    async with http.get(url + "/sign-in") as reply:
        form = await reply.text()
    found = re.search(r'name="csrf" value="([^"]+)"', form)
    if reply.status != 200 or found is None:
        raise RuntimeError(f"GET /sign-in: {reply.status} without a nonce")
    fields = {"csrf": found.group(1), "token": token}
    async with http.post(url + "/sign-in", data=fields, allow_redirects=False) as reply:
        if reply.status != 303:
            raise RuntimeError(f"POST /sign-in: {reply.status} {(await reply.text())[:300]}")
    if not any(cookie.key == "tarmac_session" for cookie in http.cookie_jar):
        raise RuntimeError("signed in, but no session cookie")


async def _first_event(target: Target) -> float:
    started = time.perf_counter()
    async with target.http.get(target.url + target.path(EVENTS)) as reply:
        if reply.status != 200:
            raise RuntimeError(f"GET {target.path(EVENTS)}: {reply.status}")
        while True:
            line = await reply.content.readline()
            if not line:
                raise RuntimeError("the event stream ended before its first event")
            if line.startswith(b"event: change"):
                elapsed = time.perf_counter() - started
                reply.close()  # the stream stays open otherwise
                return elapsed


async def timed(target: Target, page: str, checks: dict[str, Callable[[str], bool]]) -> float:
    if page == EVENTS:
        return await _first_event(target)
    if page == OVERVIEW_MISS:
        await target.mover.move()
    started = time.perf_counter()
    async with target.http.get(target.url + target.path(page)) as reply:
        body = await reply.text()
        elapsed = time.perf_counter() - started
    if reply.status != 200 or not checks[page](body):
        raise RuntimeError(f"GET {target.path(page)}: {reply.status} {body[:300]}")
    return elapsed


async def measure_in_turns(
    servers: list[tuple[str, str, Seeded, MarkMover]],
) -> list[dict[str, list[float]]]:
    """Each server signed in on a session of its own; WARM_UP rounds, then SAMPLES rounds in
    which every server answers every page once, in turn."""
    timings: list[dict[str, list[float]]] = [{page: [] for page in PAGES} for _ in servers]
    async with contextlib.AsyncExitStack() as stack:
        targets = []
        for url, token, seed, mover in servers:
            http = await stack.enter_async_context(
                aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=2),
                    cookie_jar=aiohttp.CookieJar(unsafe=True),  # cookies for 127.0.0.1
                )
            )
            await sign_in(http, url, token)
            targets.append(Target(url, seed, http, mover))
        checks = [_checks(t) for t in targets]
        for _ in range(WARM_UP):
            for target, check in zip(targets, checks, strict=True):
                for page in PAGES:
                    await timed(target, page, check)
        for _ in range(SAMPLES):
            for target, check, found in zip(targets, checks, timings, strict=True):
                for page in PAGES:
                    found[page].append(await timed(target, page, check))
    return timings


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _spread(values: list[float]) -> str:
    return "/".join(f"{_ms(percentile(values, p))}" for p in (50, 95, 99))


async def dashboard_on(backend: str, size: int = DEPLOYMENTS) -> list[Row]:
    per_rc = size * 1 // CANDIDATES
    async with (
        fresh_database(backend, "dashboard_base") as base_url,
        fresh_database(backend, "dashboard") as url,
    ):
        base = await seeded(base_url, BASELINE, BASELINE_DEPLOYMENTS_PER_RC)
        big = await seeded(url, size, per_rc)
        print(f"  {backend}: {size:,} deployments seeded in {big.seconds:.0f} s", flush=True)
        counted = await query_int(url, "SELECT count(*) FROM deployments")
        candidates = await query_int(url, "SELECT count(*) FROM release_candidates")
        if counted != size or candidates != size // per_rc + 1:
            raise RuntimeError(f"{counted:,} deployments and {candidates:,} candidates seeded")
        with tempfile.TemporaryDirectory(prefix="tarmac-dashboard-") as scratch:
            config = Path(scratch) / "tarmac.yml"
            config.write_text(wide_projects_yaml())
            async with contextlib.AsyncExitStack() as stack:
                movers = {
                    u: await stack.enter_async_context(MarkMover.on(u)) for u in (url, base_url)
                }
                codes = [None] if BEFORE is None else [None, BEFORE]
                servers: list[tuple[str, str, Seeded, MarkMover]] = []
                for code in codes:
                    for database, seed in ((url, big), (base_url, base)):
                        served = await stack.enter_async_context(_server(database, config, code))
                        servers.append((served.url, served.api_token, seed, movers[database]))
                timings = await measure_in_turns(servers)
    return _rows(backend, size, timings, candidates, big.seconds)


def _server(
    database: str, config: Path, code: str | None
) -> contextlib.AbstractAsyncContextManager[Server]:
    """`tarmac serve` on `database`: this checkout's code, or that of the checkout `code`."""
    extra = None if code is None else {"PYTHONPATH": str(Path(code).resolve())}
    return tarmac_server(database, config=config, github_app=False, env_extra=extra)


def _rows(
    backend: str,
    size: int,
    timings: list[dict[str, list[float]]],
    candidates: int,
    seeded_seconds: float,
) -> list[Row]:
    """One row a page: this code's p95 at `size`; the context gives its spread, the 1 000
    server's beside it, and (with BEFORE) the other checkout's at both sizes."""
    big, beside = timings[0], timings[1]
    rows = []
    for page in PAGES:
        p95 = percentile(big[page], 95) * 1000
        context = (
            f"p50/p95/p99 {_spread(big[page])} ms; beside {BASELINE:,}: {_spread(beside[page])} ms"
        )
        if len(timings) == 4:
            context += (
                f"; before ({BEFORE}): {_spread(timings[2][page])} ms, beside {BASELINE:,}: "
                f"{_spread(timings[3][page])} ms"
            )
        rows.append(
            Row(
                SECTION,
                f"{backend} {page}, {size:,} deployments: p95",
                round(p95, 1),
                "ms",
                f"<= {TARGET_P95_MS:g} ms",
                p95 <= TARGET_P95_MS,
                f"{context}; {SAMPLES} each; {candidates:,} candidates; "
                f"seeded in {seeded_seconds:.0f} s",
            )
        )
    return rows


async def run() -> list[Row]:
    rows: list[Row] = []
    for backend in BACKENDS:
        rows.extend(await dashboard_on(backend))
    return rows


if __name__ == "__main__":
    import sys

    chosen = sys.argv[1:] or list(BACKENDS)
    size = DEPLOYMENTS
    if chosen and chosen[-1].isdigit():
        size = int(chosen.pop())

    async def _main() -> list[Row]:
        rows: list[Row] = []
        for backend in chosen or BACKENDS:
            rows.extend(await dashboard_on(backend, size))
        return rows

    print_table(asyncio.run(_main()))
