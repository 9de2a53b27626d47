"""Webhook intake: `tarmac serve` against the floor (bench/floor.py) and a Probot app doing
nothing (bench/probot, when `make bench` could install it from npm), under wrk.

Two workloads from GitHub's example payloads, each delivery with its own `X-GitHub-Delivery`:
`noop` (a `workflow_run` of a repository no project names: verify, record, ignore) and `tag`
(each delivery the push of a new tag of the bench project: verify, record, create an RC). Each
tarmac run is measured right after a floor run and a Probot run of the same workload, on SQLite
and on PostgreSQL; afterwards the committed rows are counted. Then peak RSS after 100 000
webhooks.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    REPO_ROOT,
    Row,
    Server,
    free_port,
    fresh_database,
    private_key_pem,
    process_cpu_seconds,
    query_int,
    tarmac_server,
    wait_healthy,
)

# GitHub's example payloads, from the npm package the tests pin (make bench installs it).
from tests.github_material import example_payload, examples_of

SECTION = "intake"
WEBHOOK_PATH = "/api/github/webhooks"
LUA_SCRIPT = Path(__file__).with_name("intake.lua")
CONNECTIONS = 32
WRK_THREADS = 1  # the server is one process; one wrk thread drives 32 connections easily
WARM_UP_SECONDS = 2
RUN_SECONDS = 8
# Distinct tags written per second of a wrk run: far more than tarmac answers (the floor, which
# records nothing, may cycle through them).
TAG_RATE_CEILING = 8_000
MEMORY_WEBHOOKS = 100_000
MEMORY_SECONDS = 90  # the memory run's share of the bench's time budget
MEMORY_CHUNK_SECONDS = 30
TARGET_RATIO = 0.5
TARGET_P99_MS = 100.0
TARGET_RSS_MB = 150.0
BACKENDS = ("sqlite", "postgresql")
TAG_PLACEHOLDER = "@@TAG@@"
# The server answers once a delivery is stored (the default), or waits for its handling
# (TARMAC_WEBHOOK_ANSWER_WAIT_SECONDS=3), to answer with the outcome.
DEFAULT_MODE = "answer on append"
WAIT_MODE = "answer after handling"
DRAIN_LIMIT_SECONDS = 300
PROBOT_DIR = Path(__file__).with_name("probot")
PROBOT_BIN = PROBOT_DIR / "node_modules" / "probot" / "bin" / "probot.js"
PART_SEPARATOR = "\x1f"


@dataclass(frozen=True)
class Workload:
    name: str
    event: str
    templates: list[str]  # compact JSON bodies; a tag workload's hold TAG_PLACEHOLDER

    @property
    def makes_tags(self) -> bool:
        return TAG_PLACEHOLDER in self.templates[0]


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    sent: int
    p50_ms: float
    p99_ms: float
    statuses: dict[int, int]
    socket_errors: int
    cpu_seconds: float  # the server's, during the run

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_seconds / max(1, self.requests) * 1000

    @property
    def cpu_share(self) -> float:
        """How much of one core the server had, on average."""
        return self.cpu_seconds / self.seconds

    def describe(self) -> str:
        return (
            f"{self.throughput:.0f}/s, {self.cpu_ms_per_request:.2f} ms CPU each, "
            f"{self.cpu_share:.0%} of a core"
        )

    @property
    def answered_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def failed(self) -> int:
        """Non-2xx answers, plus requests that got no answer at all."""
        return self.requests - self.answered_2xx + self.socket_errors


def _compact(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"))


def noop_workload() -> Workload:
    """GitHub's `workflow_run` examples: a run of octo-org/octo-repo, which no project names."""
    examples = examples_of("workflow_run")
    return Workload("noop", "workflow_run", [_compact(examples[name]) for name in sorted(examples)])


def tag_workload() -> Workload:
    """GitHub's (GHES 3.5) example push of a new tag, its tag replaced per delivery."""
    payload = example_payload("push", flavour="ghes-35")
    assert payload["repository"]["full_name"] == "Codertocat/Hello-World"
    payload["ref"] = f"refs/tags/{TAG_PLACEHOLDER}"
    payload["created"] = True
    payload["deleted"] = False
    payload["before"] = "0" * 40
    return Workload("tag", "push", [_compact(payload)])


def write_deliveries(
    workload: Workload, secret: str, label: str, path: Path, seconds: float
) -> int:
    """The data file intake.lua reads: templates, then pre-signed deliveries (enough distinct
    tags for a run of `seconds`). Returns the number of deliveries written."""
    key = secret.encode()
    lines = [f"event\t{workload.event}", f"path\t{WEBHOOK_PATH}"]
    lines += [f"template\t{t.replace(TAG_PLACEHOLDER, PART_SEPARATOR)}" for t in workload.templates]
    if workload.makes_tags:
        template = workload.templates[0]
        for i in range(math.ceil(seconds * TAG_RATE_CEILING)):
            tag = f"v{label}.{i}-rc1"
            body = template.replace(TAG_PLACEHOLDER, tag).encode()
            lines.append(f"delivery\t1\t{tag}\t{_signature(key, body)}")
    else:
        for i, template in enumerate(workload.templates, start=1):
            lines.append(f"delivery\t{i}\t\t{_signature(key, template.encode())}")
    path.write_text("\n".join(lines) + "\n")
    return len(lines) - 2 - len(workload.templates)


def _signature(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


async def run_wrk(url: str, pid: int, data: Path, seconds: float) -> WrkResult:
    """wrk against the server at `url` (process `pid`, whose CPU time is measured)."""
    cpu_before = process_cpu_seconds(pid)
    process = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{WRK_THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{max(1, math.ceil(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA_SCRIPT),
        url + WEBHOOK_PATH,
        "--",
        str(data),
        secrets.token_hex(8),
        str(WRK_THREADS),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await process.communicate()
    cpu_seconds = process_cpu_seconds(pid) - cpu_before
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed: {err.decode().strip()}")
    marker = "BENCH-JSON "
    line = next((x for x in out.decode().splitlines() if x.startswith(marker)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no figures: {out.decode()} {err.decode()}")
    figures = json.loads(line[len(marker) :])
    errors = figures["errors"]
    return WrkResult(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        sent=figures["sent"],
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        statuses={int(k): v for k, v in figures["statuses"].items()},
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        cpu_seconds=cpu_seconds,
    )


@asynccontextmanager
async def floor_server(
    secret: str, durable: Path | None = None, *, record_only: bool = False
) -> AsyncIterator[tuple[str, int]]:
    """The floor's URL and process id; with `durable`, the floor that stores each delivery in
    that SQLite file before it answers (with `record_only`, decodes it and stores its id)."""
    port = free_port()
    store = ["--durable", str(durable)] if durable is not None else []
    store += ["--record-only"] if record_only else []
    args = [sys.executable, "-m", "bench.floor", "--port", str(port), *store]
    env = {"TARMAC_GITHUB_WEBHOOK_SECRET": secret, "PATH": ""}
    async with _baseline("the floor server", args, env, REPO_ROOT, port) as served:
        yield served


def probot_installed() -> bool:
    return PROBOT_BIN.exists() and shutil.which("node") is not None


@asynccontextmanager
async def probot_server(secret: str) -> AsyncIterator[tuple[str, int]]:
    """The do-nothing Probot app's URL and process id (Probot's own defaults: it logs a line
    per request at its default level, info)."""
    port = free_port()
    env = {
        "APP_ID": "4242",
        "PRIVATE_KEY": private_key_pem(),
        "WEBHOOK_SECRET": secret,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "PATH": os.environ.get("PATH", ""),
    }
    args = ["node", str(PROBOT_BIN), "run", "./app.js"]
    quiet = subprocess.DEVNULL
    async with _baseline("Probot", args, env, PROBOT_DIR, port, "/ping", quiet) as served:
        yield served


@asynccontextmanager
async def _baseline(
    what: str,
    args: list[str],
    env: dict[str, str],
    cwd: Path,
    port: int,
    health_path: str = "/healthz",
    output: int | None = None,
) -> AsyncIterator[tuple[str, int]]:
    """A server to measure tarmac beside, started from `args`, healthy at `health_path`: its
    URL and process id; stopped at the end."""
    process = await asyncio.create_subprocess_exec(
        *args, env=env, cwd=cwd, stdout=output, stderr=output
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, what, lambda: process.returncode is not None, path=health_path)
        yield url, process.pid
    finally:
        process.terminate()
        await process.wait()


async def run_baseline(
    server: AbstractAsyncContextManager[tuple[str, int]], data: Path
) -> WrkResult:
    """wrk against a baseline server: warmed up, then the measured run."""
    async with server as (url, pid):
        await run_wrk(url, pid, data, WARM_UP_SECONDS)
        return await run_wrk(url, pid, data, RUN_SECONDS)


@dataclass
class Pair:
    """One workload on one database: the floor's run, Probot's (None when not installed) and
    tarmac's, back to back; with how long tarmac's inbox took to drain after wrk stopped, and
    how long deliveries waited in it."""

    backend: str
    workload: Workload
    floor: WrkResult
    durable_floor: WrkResult | None  # measured beside SQLite only
    # Beside SQLite's noop only: what recording that a delivery came costs (bench/floor.py).
    record_floor: WrkResult | None
    probot: WrkResult | None
    tarmac: WrkResult
    drain_seconds: float
    inbox_wait: InboxWait
    mode: str  # "answer after handling" (the default wait) or "answer on append" (no wait)

    @property
    def handled_throughput(self) -> float:
        """Deliveries handled per second, the inbox drained: what the users get."""
        return self.tarmac.answered_2xx / (self.tarmac.seconds + self.drain_seconds)


@dataclass(frozen=True)
class InboxWait:
    """From stored to handled (tarmac_webhook_inbox_seconds over one run), p50 and p99 in ms,
    interpolated within the histogram's buckets."""

    count: int
    p50_ms: float
    p99_ms: float


async def inbox_histogram(url: str) -> dict[float, float]:
    """tarmac_webhook_inbox_seconds' cumulative bucket counts (upper bound -> count)."""
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as response:
        text = await response.text()
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("tarmac_webhook_inbox_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[math.inf if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def inbox_wait(before: dict[float, float], after: dict[float, float]) -> InboxWait:
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0

    def quantile(q: float) -> float:
        if total == 0:
            return math.nan
        rank = q * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in zip(bounds, counts, strict=True):
            if count >= rank:
                if math.isinf(bound):
                    return lower_bound * 1000
                share = (rank - lower_count) / max(count - lower_count, 1e-9)
                return (lower_bound + share * (bound - lower_bound)) * 1000
            lower_bound, lower_count = bound, count
        return lower_bound * 1000

    return InboxWait(int(total), quantile(0.5), quantile(0.99))


async def drain_seconds(database_url: str, started: float) -> float:
    """Wait until the inbox is empty; the seconds from `started` (wrk's end) until then."""
    while await query_int(database_url, "SELECT count(*) FROM webhook_inbox"):
        if time.monotonic() - started > DRAIN_LIMIT_SECONDS:
            raise RuntimeError("the inbox did not drain")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


class Load:
    """wrk runs against one tarmac server, each with its own data file; counts what it sent."""

    def __init__(self, server: Server, scratch: Path) -> None:
        self.server = server
        self.scratch = scratch
        self.runs = 0
        self.answered_2xx = 0
        self.tags_2xx = 0
        self.sent = 0

    def data_file(self, workload: Workload, seconds: float) -> tuple[Path, int]:
        self.runs += 1
        path = self.scratch / f"{workload.name}-{self.runs}.tsv"
        secret = self.server.webhook_secret
        count = write_deliveries(workload, secret, str(self.runs), path, seconds)
        return path, count

    async def run(self, workload: Workload, seconds: float) -> WrkResult:
        data, count = self.data_file(workload, seconds)
        result = await run_wrk(self.server.url, self.server.pid, data, seconds)
        self.sent += result.sent
        self.answered_2xx += result.answered_2xx
        if workload.makes_tags:
            if result.sent > count:
                raise RuntimeError("tarmac took more tag deliveries than were written")
            self.tags_2xx += result.answered_2xx
        return result


async def measure(
    load: Load, backend: str, workload: Workload, database_url: str, mode: str
) -> Pair:
    data, _ = load.data_file(workload, RUN_SECONDS)
    secret = load.server.webhook_secret
    floor = await run_baseline(floor_server(secret), data)
    durable_floor = record_floor = None
    if backend == "sqlite":
        stored = load.scratch / f"durable-floor-{load.runs}.db"
        durable_floor = await run_baseline(floor_server(secret, stored), data)
        if not workload.makes_tags:
            recorded = load.scratch / f"record-floor-{load.runs}.db"
            record_floor = await run_baseline(
                floor_server(secret, recorded, record_only=True), data
            )
    probot = await run_baseline(probot_server(secret), data) if probot_installed() else None
    await load.run(workload, WARM_UP_SECONDS)
    await drain_seconds(database_url, time.monotonic())
    before = await inbox_histogram(load.server.url)
    tarmac = await load.run(workload, RUN_SECONDS)
    drained = await drain_seconds(database_url, time.monotonic())
    waited = inbox_wait(before, await inbox_histogram(load.server.url))
    return Pair(
        backend, workload, floor, durable_floor, record_floor, probot, tarmac, drained, waited, mode
    )


def pair_rows(pair: Pair) -> list[Row]:
    where = f"{pair.workload.name}/{pair.backend}{mode_suffix(pair.mode)}"
    ratio = pair.handled_throughput / pair.floor.throughput
    t, f = pair.tarmac, pair.floor
    return [
        Row(
            SECTION,
            f"{where}: throughput tarmac/floor",
            ratio,
            "",
            f">= {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
            f"tarmac {pair.handled_throughput:.0f}/s handled with the inbox drained "
            f"({t.describe()}; drained {pair.drain_seconds:.2f} s after wrk); floor {f.describe()}",
        ),
        *durable_floor_rows(where, pair),
        probot_row(where, pair),
        Row(
            SECTION,
            f"{where}: stored to handled p50 / p99",
            pair.inbox_wait.p99_ms,
            "ms",
            "",
            None,
            f"p50 {pair.inbox_wait.p50_ms:.1f} ms, p99 {pair.inbox_wait.p99_ms:.1f} ms over "
            f"{pair.inbox_wait.count} deliveries ({pair.mode})",
        ),
        Row(SECTION, f"{where}: p50 latency", t.p50_ms, "ms", "", None, f"floor {f.p50_ms:.1f} ms"),
        Row(
            SECTION,
            f"{where}: p99 latency",
            t.p99_ms,
            "ms",
            f"<= {TARGET_P99_MS:.0f} ms",
            t.p99_ms <= TARGET_P99_MS,
            f"floor {f.p99_ms:.1f} ms",
        ),
        Row(
            SECTION,
            f"{where}: non-2xx or failed",
            t.failed,
            "",
            "0",
            t.failed == 0,
            f"of {t.requests} answered",
        ),
    ]


def durable_floor_rows(where: str, pair: Pair) -> list[Row]:
    """What storing each delivery before answering costs with nothing else done (SQLite); for
    noop, what decoding it and recording only its id does."""
    durable, recorded = pair.durable_floor, pair.record_floor
    if durable is None:
        return []
    rows = [
        Row(
            SECTION,
            f"{where}: durable floor/floor",
            durable.throughput / pair.floor.throughput,
            "",
            "",
            None,
            f"HMAC, then the whole body stored in SQLite (group commits, synchronous=FULL) "
            f"before the answer: {durable.describe()}, p99 {durable.p99_ms:.1f} ms",
        )
    ]
    if recorded is not None:
        rows.append(
            Row(
                SECTION,
                f"{where}: record-only floor/floor",
                recorded.throughput / pair.floor.throughput,
                "",
                "",
                None,
                f"HMAC, the body decoded, then only its id and event stored in SQLite (a unique "
                f"key, group commits, synchronous=FULL) before the answer: "
                f"{recorded.describe()}, p99 {recorded.p99_ms:.1f} ms",
            )
        )
    return rows


def probot_row(where: str, pair: Pair) -> Row:
    """Tarmac's handled throughput against the Probot app's (which stores nothing)."""
    probot = pair.probot
    if probot is None:
        return Row(
            SECTION,
            f"{where}: throughput tarmac/Probot",
            math.nan,
            "",
            "> 1",
            None,
            "Probot not installed (make bench installs bench/probot from npm)",
        )
    ratio = pair.handled_throughput / probot.throughput
    return Row(
        SECTION,
        f"{where}: throughput tarmac/Probot",
        ratio,
        "",
        "> 1",
        ratio > 1,
        f"Probot 14 doing nothing {probot.describe()}, p99 {probot.p99_ms:.1f} ms "
        f"= {probot.throughput / pair.floor.throughput:.2f}x the floor",
    )


def mode_suffix(mode: str) -> str:
    """What a row's name adds for the answer mode: nothing for the default."""
    return "" if mode == DEFAULT_MODE else "/wait"


async def measure_backend(backend: str, scratch: Path, mode: str = DEFAULT_MODE) -> list[Row]:
    rows: list[Row] = []
    env = {} if mode == DEFAULT_MODE else {"TARMAC_WEBHOOK_ANSWER_WAIT_SECONDS": "3"}
    async with fresh_database(backend, "intake") as url:
        async with tarmac_server(url, env_extra=env) as server:
            load = Load(server, scratch)
            for workload in (noop_workload(), tag_workload()):
                pair = await measure(load, backend, workload, url, mode)
                rows += pair_rows(pair)
        # Counted once the server has stopped: requests in flight when wrk stopped are done.
        deliveries = await query_int(url, "SELECT count(*) FROM webhook_deliveries")
        candidates = await query_int(url, "SELECT count(*) FROM release_candidates")
    rows += [
        Row(
            SECTION,
            f"{backend}{mode_suffix(mode)}: deliveries committed",
            deliveries,
            "",
            f">= {load.answered_2xx} answered 2xx",
            load.answered_2xx <= deliveries <= load.sent,
            f"{load.sent} sent",
        ),
        Row(
            SECTION,
            f"{backend}{mode_suffix(mode)}: RCs committed",
            candidates,
            "",
            f">= {load.tags_2xx} tags answered 2xx",
            candidates >= load.tags_2xx,
        ),
    ]
    return rows


async def measure_memory(scratch: Path) -> list[Row]:
    """Peak RSS of `tarmac serve` (SQLite) after MEMORY_WEBHOOKS deliveries (nine in ten noop,
    one in ten tags), or as many as MEMORY_SECONDS allow (TARMAC_BENCH_FULL=1: all of them)."""
    full = os.environ.get("TARMAC_BENCH_FULL") == "1"
    deadline = time.monotonic() + MEMORY_SECONDS
    async with fresh_database("sqlite", "memory") as url, tarmac_server(url) as server:
        at_start = server.peak_rss_mb()
        load = Load(server, scratch)
        noop, tag = noop_workload(), tag_workload()
        while load.sent < MEMORY_WEBHOOKS and (full or time.monotonic() < deadline):
            left = deadline - time.monotonic()
            await load.run(noop, MEMORY_CHUNK_SECONDS if full else max(1, min(9, left * 0.9)))
            await load.run(tag, 1)
        peak = server.peak_rss_mb()
    reached = load.sent >= MEMORY_WEBHOOKS
    within = peak <= TARGET_RSS_MB
    return [
        Row(
            "memory",
            f"peak RSS after {load.sent:,} webhooks",
            peak,
            "MB",
            f"<= {TARGET_RSS_MB:.0f} MB after {MEMORY_WEBHOOKS:,}",
            within if reached or not within else None,
            f"{at_start:.0f} MB at start (SQLite)"
            + ("" if reached else f"; {MEMORY_SECONDS} s allowed too few (TARMAC_BENCH_FULL=1)"),
        )
    ]


async def run() -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="tarmac-bench-intake-") as scratch:
        for backend in BACKENDS:
            rows += await measure_backend(backend, Path(scratch))
            rows += await measure_backend(backend, Path(scratch), WAIT_MODE)
        rows += await measure_memory(Path(scratch))
    return rows


async def run_memory_only() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="tarmac-bench-memory-") as scratch:
        return await measure_memory(Path(scratch))


if __name__ == "__main__":
    # `python -m bench.intake [memory]`: this section alone, or only its memory run.
    from bench.common import print_table

    only_memory = sys.argv[1:] == ["memory"]
    print_table(asyncio.run(run_memory_only() if only_memory else run()))
