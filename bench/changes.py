"""Change reports: the GitHub calls one report takes, and a stored report served beside
1 000 000 deployments.

1. Calls per report. A real `ReportFetch` (bot/github/outbound/change_reports.py), through the
   real `GitHubClient` (App JWT, installation token), against the test suite's fake GitHub on
   loopback (tests/fake_github.py: every request checked against GitHub's REST description),
   for ranges of 10, 250 and 1 000 commits in three shapes of history:
   (a) every commit a squash-merged pull request, no `paths:`;
   (b) a mix: of every ten changes, seven squash-merged PRs, two merge-commit PRs (of two and
       three commits) and one push straight to the branch; no `paths:`;
   (c) shape (a) with a `paths:` filter that half the PRs touch.
   Each range sits on 200 PRs merged before it, and one PR in 20 is closed without merging,
   so the closed-PR listing has to find where to stop. The calls are counted at the fake by
   kind and checked against the fetch's own count; the report is checked complete (every
   commit of the range that counts, every PR expected, in order) or the row fails. Beside
   them, what "one `/commits/{sha}/pulls` per commit" would take: the comparison's pages, the
   commits' files when there is a filter, and one call per commit that counts. The fake
   answers at once: the times are Tarmac's work plus loopback, not GitHub's latency.

2. A stored report at 1 000 000 deployments. bench.history's `HistorySeeder` seeds the history
   (SQLite and PostgreSQL); one complete report (50 commits, 20 PRs) is stored through
   `bot.storage.change_reports` between the candidate running in production and the newest
   one; `tarmac serve` (no GitHub App: a stored report needs none) answers
   `GET …/changes?since=` (and `?environment=production`, which finds the base through the
   deployments) one request at a time, in turns with a server on a 1 000-deployment database.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from bench.common import (
    BENCH_APP_ID,
    Row,
    fresh_database,
    percentile,
    print_table,
    private_key_pem,
    query_int,
    tarmac_server,
)
from bench.history import PROJECT, REPO, HistorySeeder, projects_yaml
from bot.domain.changes import ChangeReport, Commit, PathFilter, PullRequest
from bot.github.app_auth import GitHubAppSettings
from bot.github.client import GitHubClient
from bot.github.outbound.change_reports import ReportFetch
from bot.storage.change_reports import ask_for_report, store_report
from bot.storage.db import Database
from bot.storage.deployments import running_release_candidate
from bot.storage.projects import find_environment
from tests.fake_github import RATE_LIMIT, FakeGitHub
from tests.fake_history import History

SECTION = "changes"

# --- 1. calls per report -----------------------------------------------------------------

SIZES = (10, 250, 1_000)
INSTALLATION_ID = 91
EARLIER_PRS = 200
CLOSED_UNMERGED_EVERY = 20
FILTER = PathFilter(("frontend/**",))
SQUASH, MERGE_2, MERGE_3, DIRECT = "squash", "merge2", "merge3", "direct"
# Shape (b), change by change: 70% squash, 20% merge commits of 2-3 commits, 10% direct.
MIX = [SQUASH, SQUASH, MERGE_2, SQUASH, SQUASH, DIRECT, SQUASH, MERGE_3, SQUASH, SQUASH]
SIZE_OF = {SQUASH: 1, MERGE_2: 3, MERGE_3: 4, DIRECT: 1}  # commits each adds to the range
SHAPES = {
    "a": "squash PRs, no filter",
    "b": "70/20/10 squash/merge/direct, no filter",
    "c": "squash PRs, paths: (half touch)",
}

COMPARE = "compare pages"
LISTING = "closed-PR pages"
COMMIT_PULLS = "/commits/{sha}/pulls"
FILES = "/commits/{sha} files"
KINDS = (COMPARE, LISTING, COMMIT_PULLS, FILES)


@dataclass
class Range:
    """A range written into a fake history, and what its report must say."""

    repo: str
    base: str
    head: str
    paths: PathFilter
    commits: list[str]  # the shas that count, oldest first
    pull_requests: list[int]  # the PR numbers, in merge order


def _change(history: History, n: int, kind: str, touches: bool) -> tuple[list[str], int | None]:
    """Change `n` of a range, of `kind`: the commits it adds to the branch, and its PR."""
    files = [f"frontend/app/{n}.js"] if touches else [f"backend/svc/{n}.py"]
    if kind == DIRECT:
        return [history.commit(f"Hotfix {n}: bump the retry limit", files=files)], None
    if kind == SQUASH:
        number = history.merge_pull_request(f"Change {n}: tidy the handlers", [files])
        return [history.tip or ""], number
    size = SIZE_OF[kind] - 1
    number = history.merge_pull_request(
        f"Feature {n}: split the worker", [files] * size, style="merge"
    )
    return [*history.pulls[-1].commits, history.tip or ""], number


def write_range(fake: FakeGitHub, shape: str, size: int) -> Range:
    """A repository with earlier history and then `size` commits in `shape`."""
    repo = f"acme/changes-{shape}-{size}"
    fake.install(repo, INSTALLATION_ID)
    history = fake.history(repo)
    for k in range(EARLIER_PRS):
        history.merge_pull_request(f"Earlier {k}", [[f"backend/old/{k}.py"]])
    base = history.tip or ""
    commits: list[str] = []
    numbers: list[int] = []
    written = 0  # commits the range has so far, counted or not
    n = 0
    while written < size:
        kind = MIX[n % len(MIX)] if shape == "b" else SQUASH
        if SIZE_OF[kind] > size - written:
            kind = SQUASH
        touches = shape != "c" or n % 2 == 0
        added, number = _change(history, n, kind, touches)
        written += len(added)
        if touches:
            commits.extend(added)
            numbers.extend([number] if number is not None else [])
        if n % CLOSED_UNMERGED_EVERY == CLOSED_UNMERGED_EVERY - 1:
            history.close_without_merging(f"Abandoned {n}")
        n += 1
    paths = FILTER if shape == "c" else PathFilter()
    return Range(repo, base, history.tip or "", paths, commits, numbers)


def _kind(path: str) -> str | None:
    if "/compare/" in path:
        return COMPARE
    if re.search(r"/commits/[0-9a-f]{40}/pulls$", path):
        return COMMIT_PULLS
    if re.search(r"/commits/[0-9a-f]{40}$", path):
        return FILES
    if re.fullmatch(r"/repos/[^/]+/[^/]+/pulls", path):
        return LISTING
    return None


@dataclass
class Fetched:
    shape: str
    size: int
    calls: Counter[str]
    fetch_calls: int
    seconds: float
    problems: list[str]
    one_per_commit: int


def completeness(expected: Range, report: ChangeReport) -> list[str]:
    """What the report lacks or has wrong; nothing for a complete one."""
    problems = []
    if report.diverged:
        problems.append("reported diverged")
    shas = [c.sha for c in report.commits]
    if shas != expected.commits:
        problems.append(f"{len(shas)} commits, expected {len(expected.commits)}")
    numbers = [pr.number for pr in report.pull_requests]
    if numbers != expected.pull_requests:
        problems.append(f"{len(numbers)} PRs, expected {len(expected.pull_requests)}")
    return problems


async def fetch_one(fake: FakeGitHub, client: GitHubClient, shape: str, size: int) -> Fetched:
    expected = write_range(fake, shape, size)

    async def call(endpoint: Callable[..., Any], **kwargs: Any) -> Any:
        return await endpoint(client, INSTALLATION_ID, expected.repo, **kwargs)

    fake.calls.clear()
    fake.rate_limit_remaining = RATE_LIMIT  # each report on a full hour's budget
    loop = asyncio.get_running_loop()
    fetch = ReportFetch(
        call, expected.repo, expected.base, expected.head, expected.paths, loop.time() + 600
    )
    started = time.perf_counter()
    report = await fetch.report()
    seconds = time.perf_counter() - started
    calls = Counter(k for k in (_kind(c.path) for c in fake.calls) if k is not None)
    problems = completeness(expected, report)
    if sum(calls.values()) != fetch.calls:
        problems.append(f"the fake saw {sum(calls.values())} calls, the fetch made {fetch.calls}")
    if fake.violations:
        problems.append(f"requests GitHub would refuse: {fake.violations[:3]}")
    compare_pages = math.ceil(size / 100)
    files = size if expected.paths.active else 0
    one_per_commit = compare_pages + files + len(expected.commits)
    return Fetched(shape, size, calls, fetch.calls, seconds, problems, one_per_commit)


@contextlib.asynccontextmanager
async def fake_github_and_client() -> AsyncIterator[tuple[FakeGitHub, GitHubClient]]:
    """The fake GitHub on loopback, and a real GitHubClient with the App's RSA key."""
    private_key = private_key_pem()
    key = serialization.load_pem_private_key(private_key.encode(), password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fake = FakeGitHub(BENCH_APP_ID, public.decode("ascii"))
    runner = web.AppRunner(fake.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.server_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    app = GitHubAppSettings(BENCH_APP_ID, private_key, "bench-secret", fake.server_url)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            yield fake, GitHubClient(http, app)
    finally:
        await runner.cleanup()


def call_rows(results: list[Fetched]) -> list[Row]:
    rows = []
    for r in results:
        total = sum(r.calls.values())
        kinds = ", ".join(f"{kind} {r.calls[kind]}" for kind in KINDS)
        met = not r.problems and total < r.one_per_commit
        context = f"{kinds}; one /pulls per commit: {r.one_per_commit}; {r.seconds:.2f} s" + (
            f"; INCOMPLETE: {'; '.join(r.problems)}" if r.problems else ""
        )
        rows.append(
            Row(
                SECTION,
                f"GitHub calls, {r.size:,} commits, ({r.shape}) {SHAPES[r.shape]}",
                total,
                "calls",
                f"complete, < {r.one_per_commit}",
                met,
                context,
            )
        )
    return rows


async def calls_per_report() -> list[Row]:
    results = []
    async with fake_github_and_client() as (fake, client):
        for shape in SHAPES:
            for size in SIZES:
                results.append(await fetch_one(fake, client, shape, size))
    return call_rows(results)


# --- 2. a stored report at 1 000 000 deployments -------------------------------------------

DEPLOYMENTS = 1_000_000
BASELINE = 1_000
BACKENDS = ("sqlite", "postgresql")
SAMPLES = 300
WARM_UP = 20
TARGET_P50_MS = 20.0
REPORT_COMMITS = 50
REPORT_PULLS = 20
RUNNING_IN = "production"
SINCE, ENVIRONMENT = "since=", "environment="

_SUBJECTS = [
    "Retry the payments webhook when the provider answers 502",
    "Show the deploy queue on the environment page",
    "Upgrade aiohttp to 3.10 and drop the keep-alive workaround",
    "Make the nightly export skip archived projects",
    "Fix the timezone of the audit log in CSV downloads",
    "Cache the feature flags for thirty seconds per worker",
    "Add an index for the invoices search by customer",
    "Explain the rollback button in the release notes dialog",
    "Stop logging the full request body on validation errors",
    "Split the settings page into tabs",
]


def realistic_report(
    base: str,
    head: str,
    commits: int = REPORT_COMMITS,
    pull_requests: int = REPORT_PULLS,
    repo: str = REPO,
) -> ChangeReport:
    """`commits` commits (50) in `pull_requests` pull requests (20), with the text real ones
    have."""
    merged = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    pulls = tuple(
        PullRequest(
            number=4100 + k,
            title=_SUBJECTS[k % len(_SUBJECTS)],
            author=f"developer-{k % 7}",
            url=f"https://github.com/{repo}/pull/{4100 + k}",
            merged_at=merged + timedelta(minutes=37 * k),
        )
        for k in range(pull_requests)
    )
    listed = []
    for k in range(commits):
        sha = f"{k + 1:08x}" + "c0ffee" * 5 + "ab"
        pull = pulls[k * pull_requests // commits]
        message = f"{_SUBJECTS[(k * 3) % len(_SUBJECTS)]} (#{pull.number})"
        listed.append(Commit(sha, message, pull.author, f"https://github.com/{repo}/commit/{sha}"))
    return ChangeReport(base, head, commits, 0, False, tuple(listed), pulls)


@dataclass(frozen=True)
class Stored:
    base_version: str
    head_version: str


async def store_a_report(db: Database, seeder: HistorySeeder) -> Stored:
    """One complete report, from what runs in production to the newest candidate, stored as
    the worker stores one (asked for, then filled in)."""
    head_id, head_version = seeder.candidate_ids[-1], seeder.candidate_versions[-1]
    async with db.write() as session:
        environment = await find_environment(session, PROJECT, RUNNING_IN)
        running = await running_release_candidate(session, environment)
        if running is None or running.id == head_id:
            raise RuntimeError(f"{RUNNING_IN} runs no RC, or the newest: no range to report")
        base_version, base_commit = running.version, running.commit_sha
        head_commit = f"{head_id:040x}"
        now = datetime.now(UTC)
        paths = PathFilter()
        if not await ask_for_report(session, REPO, base_commit, head_commit, paths, now):
            raise RuntimeError("the report was asked for already in a fresh database")
        report = realistic_report(base_commit, head_commit)
        await store_report(session, REPO, paths, report, github_calls=3, now=now)
    return Stored(base_version, head_version)


@dataclass
class Served:
    url: str
    token: str
    stored: Stored

    def path(self, query: str) -> str:
        where = f"/api/releases/{PROJECT}/releases/{self.stored.head_version}/changes"
        if query == SINCE:
            return f"{where}?since={self.stored.base_version}"
        return f"{where}?environment={RUNNING_IN}"


async def _timed_get(http: aiohttp.ClientSession, served: Served, query: str) -> float:
    started = time.perf_counter()
    async with http.get(
        served.url + served.path(query), headers={"Authorization": f"Bearer {served.token}"}
    ) as reply:
        body = await reply.json()
        elapsed = time.perf_counter() - started
    if reply.status != 200 or len(body["commits"]) != REPORT_COMMITS:
        raise RuntimeError(f"GET {served.path(query)}: {reply.status} {str(body)[:300]}")
    return elapsed


async def measure_in_turns(targets: list[Served]) -> list[dict[str, list[float]]]:
    """SAMPLES rounds; in each, every target answers each query once, in turn."""
    timings: list[dict[str, list[float]]] = [{SINCE: [], ENVIRONMENT: []} for _ in targets]
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(
                aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
            )
            for _ in targets
        ]
        for _ in range(WARM_UP):
            for http, served in zip(sessions, targets, strict=True):
                for query in (SINCE, ENVIRONMENT):
                    await _timed_get(http, served, query)
        for _ in range(SAMPLES):
            for http, served, found in zip(sessions, targets, timings, strict=True):
                for query in (SINCE, ENVIRONMENT):
                    found[query].append(await _timed_get(http, served, query))
    return timings


async def _seeded(db: Database, size: int) -> tuple[Stored, float]:
    started = time.monotonic()
    seeder = await HistorySeeder.create(db)
    await seeder.top_up(size)
    await seeder.analyze()
    seconds = time.monotonic() - started
    return await store_a_report(db, seeder), seconds


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _spread(values: list[float]) -> str:
    return "/".join(f"{_ms(percentile(values, p))}" for p in (50, 95, 99))


async def stored_report_on(backend: str, size: int = DEPLOYMENTS) -> list[Row]:
    async with (
        fresh_database(backend, "changes_base") as base_url,
        fresh_database(backend, "changes") as url,
    ):
        base_db, db = Database.from_url(base_url), Database.from_url(url)
        try:
            base_stored, _ = await _seeded(base_db, BASELINE)
            big_stored, seeded = await _seeded(db, size)
        finally:
            await base_db.dispose()
            await db.dispose()
        print(f"  {backend}: {size:,} deployments seeded in {seeded:.0f} s", flush=True)
        counted = await query_int(url, "SELECT count(*) FROM deployments")
        if counted != size:
            raise RuntimeError(f"{counted:,} deployments in the database, not {size:,}")
        with tempfile.TemporaryDirectory(prefix="tarmac-changes-") as scratch:
            config = Path(scratch) / "tarmac.yml"
            config.write_text(projects_yaml())
            async with (
                tarmac_server(url, config=config, github_app=False) as big,
                tarmac_server(base_url, config=config, github_app=False) as baseline,
            ):
                timings, beside = await measure_in_turns(
                    [
                        Served(big.url, big.api_token, big_stored),
                        Served(baseline.url, baseline.api_token, base_stored),
                    ]
                )
    rows = []
    for query in (SINCE, ENVIRONMENT):
        p50 = percentile(timings[query], 50) * 1000
        rows.append(
            Row(
                SECTION,
                f"{backend} stored report ?{query}, {size:,} deployments: p50",
                round(p50, 2),
                "ms",
                f"<= {TARGET_P50_MS:g} ms",
                p50 <= TARGET_P50_MS,
                f"p50/p95/p99 {_spread(timings[query])} ms; beside {BASELINE:,}: "
                f"{_spread(beside[query])} ms; {SAMPLES} each; seeded in {seeded:.0f} s",
            )
        )
    return rows


async def run() -> list[Row]:
    rows = await calls_per_report()
    for backend in BACKENDS:
        rows.extend(await stored_report_on(backend))
    return rows


if __name__ == "__main__":
    print_table(asyncio.run(run()))
