"""Outbox drain: 10 000 pending GitHub calls across 1 000 deployments, delivered by the outbox
worker of a real `tarmac serve` to the fake GitHub of the test suite (tests/fake_github.py, which
checks every request against GitHub's REST description), once answering at once and once
50 ms late per call.

The calls are enqueued before the server starts, ten per deployment: a deploy through the domain
operation plans the GitHub deployment, the workflow dispatch and the `pending` status; seven
progress statuses follow, as the outbox's `enqueue` writes them. The rate is
10 000 over the time from the first call the fake received to the answer of the last one.
Afterwards: exactly 10 000 effects reached the fake, each deployment's in the order they were
enqueued, and the outbox holds nothing pending.
"""

from __future__ import annotations

import asyncio
import math
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from bench.common import (
    BENCH_APP_ID,
    Row,
    copy_of_database,
    fresh_database,
    print_table,
    private_key_pem,
    query_int,
    tarmac_server,
)
from bot.app import operations
from bot.app.operations import Mirror
from bot.app.releases import create_release_candidate
from bot.config.projects_file import parse_projects
from bot.config.projects_sync import sync_projects
from bot.storage.db import Database
from bot.storage.models import OutboxItem
from bot.storage.outbox import OutboxState, deployment_key
from bot.storage.projects import find_project
from tests.fake_github import Call, FakeGitHub

SECTION = "drain"
BACKENDS = ("postgresql", "sqlite")
DEPLOYMENTS = 1_000
CALLS_PER_DEPLOYMENT = 10
CALLS = DEPLOYMENTS * CALLS_PER_DEPLOYMENT
# After the GitHub deployment, the dispatch and the `pending` status.
PROGRESS_STEPS = range(1, CALLS_PER_DEPLOYMENT - 3 + 1)
LATENCIES = (0.0, 0.05)
TARGETS = {0.0: 500.0, 0.05: 200.0}  # calls/s
DRAIN_TIMEOUT_SECONDS = 90
INSTALLATION_ID = 77
PROJECT = "Drain"
REPO = "acme/drain"
# One deployment an environment: a second deploy to an environment supersedes the first, which
# adds its own calls (a cancel, a status) to the sequence the order check expects.
ENVIRONMENTS = [f"env{k}" for k in range(DEPLOYMENTS)]
VERSIONS = [f"v1.{k}.0-rc1" for k in range(10)]
DEPLOYS_PER_TRANSACTION = 100
PROJECTS_YAML = f"""
projects:
  - name: {PROJECT}
    repo: {REPO}
    environments:
""" + "".join(f"      - {{name: {name}, deploy_workflow: deploy.yml}}\n" for name in ENVIRONMENTS)

# The calls that are effects of outbox items (not the token and installation look-ups).
CREATE = "POST deployment"
DISPATCH = "POST dispatch"
STATUS = "POST status"


def _effect(call: Call) -> str | None:
    if call.method != "POST" or not call.path.startswith(f"/repos/{REPO}/"):
        return None
    if call.path.endswith("/deployments"):
        return CREATE
    if call.path.endswith("/dispatches"):
        return DISPATCH
    if call.path.endswith("/statuses"):
        return STATUS
    return None


async def enqueue_work(db: Database) -> list[int]:
    """1 000 deployments with ten GitHub calls each in the outbox; returns their ids.

    Each deploy goes through the domain operation, which plans its GitHub deployment, its
    workflow dispatch and its `pending` status; its seven progress statuses are written as
    `enqueue` writes them, in one statement per transaction (a flush per item would make this
    set-up slower than the drain it prepares)."""
    config = parse_projects(yaml.safe_load(PROJECTS_YAML), Path("tarmac.yml"))
    mirror = Mirror(enabled=True)
    now = datetime.now(UTC)
    async with db.write() as session:
        await sync_projects(session, config, now)
        for k, version in enumerate(VERSIONS):
            await create_release_candidate(
                session,
                await find_project(session, PROJECT),
                version=version,
                repo=REPO,
                commit=f"{k + 1:040x}",
                build=False,
                now=now,
            )
    ids: list[int] = []
    for first in range(0, DEPLOYMENTS, DEPLOYS_PER_TRANSACTION):
        async with db.write() as session:
            batch = [
                await _deploy(session, mirror, n, now)
                for n in range(first, first + DEPLOYS_PER_TRANSACTION)
            ]
            await session.execute(
                insert(OutboxItem),
                [_progress_status(d, step, now) for d in batch for step in PROGRESS_STEPS],
            )
            ids.extend(batch)
    return ids


async def _deploy(session: AsyncSession, mirror: Mirror, n: int, now: datetime) -> int:
    deployment = await operations.deploy(
        session,
        mirror,
        project_name=PROJECT,
        environment_name=ENVIRONMENTS[n % len(ENVIRONMENTS)],
        version=VERSIONS[n // len(ENVIRONMENTS) % len(VERSIONS)],
        actor="bench@example.com",
        clock=lambda: now,
    )
    return deployment.id


def _progress_status(deployment_id: int, step: int, now: datetime) -> dict[str, Any]:
    return {
        "ordering_key": deployment_key(deployment_id),
        "action": "post_deployment_status",
        "repo": REPO,
        "deployment_id": deployment_id,
        "payload": {
            "state": "in_progress",
            "description": f"step {step} of {len(PROGRESS_STEPS)}",
            "environment_url": None,
        },
        "state": OutboxState.PENDING,
        "attempts": 0,
        "uncertain": False,
        "next_attempt_at": now,
        "created_at": now,
    }


@dataclass
class FakeServer:
    github: FakeGitHub
    runner: web.AppRunner
    url: str


async def start_fake_github(private_key: str, latency: float) -> FakeServer:
    key = serialization.load_pem_private_key(private_key.encode(), password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    github = FakeGitHub(BENCH_APP_ID, public.decode("ascii"))
    github.install(REPO, INSTALLATION_ID)
    github.latency = latency
    runner = web.AppRunner(github.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    github.server_url = f"http://127.0.0.1:{port}"
    return FakeServer(github, runner, github.server_url)


def check_order(github: FakeGitHub, deployment_ids: list[int]) -> list[str]:
    """Each deployment's effects arrived as enqueued: its GitHub deployment, its dispatch,
    then its statuses pending, step 1..7. Returns what is wrong, if anything."""
    owner: dict[int, int] = {}  # GitHub deployment id -> Tarmac deployment id
    for deployment in github.deployments.get(REPO, []):
        owner[int(deployment["id"])] = int(deployment["payload"]["tarmac_deployment_id"])
    seen: dict[int, list[str]] = defaultdict(list)
    for call in github.calls:
        effect = _effect(call)
        if effect == CREATE:
            seen[int(call.body["payload"]["tarmac_deployment_id"])].append(CREATE)
        elif effect == DISPATCH:
            seen[int(call.body["inputs"]["tarmac_deployment_id"])].append(DISPATCH)
        elif effect == STATUS:
            github_id = int(call.path.split("/")[-2])
            state, description = call.body["state"], call.body["description"]
            label = description if description.startswith("step ") else state
            seen[owner[github_id]].append(label)
    expected = [CREATE, DISPATCH, "pending"] + [
        f"step {k} of {len(PROGRESS_STEPS)}" for k in PROGRESS_STEPS
    ]
    problems = [f"deployment {d}: {seen.get(d)}" for d in deployment_ids if seen.get(d) != expected]
    return problems[:5]


@dataclass
class DrainResult:
    backend: str
    latency: float
    calls: int
    seconds: float
    problems: list[str]
    cpu_seconds: float  # the server's, start-up included

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0


async def drain_on(backend: str) -> list[DrainResult]:
    """Enqueue once, then drain a copy of that database at each latency."""
    async with fresh_database(backend, "drain") as url:
        db = Database.from_url(url)
        try:
            await db.migrate()
            deployment_ids = await enqueue_work(db)
            if not db.is_sqlite:
                # What autovacuum does within a minute on a live database: without statistics
                # the planner takes the fresh 10 000-row backlog for a handful of rows.
                async with db.engine.connect() as connection:
                    await connection.execute(text("ANALYZE outbox"))
                    await connection.commit()
        finally:
            await db.dispose()
        pending = await query_int(url, "SELECT count(*) FROM outbox WHERE state = 'pending'")
        assert pending == CALLS, pending
        results = []
        for latency in LATENCIES:
            async with copy_of_database(url, "drain") as copy:
                results.append(await drain_once(backend, copy, latency, deployment_ids))
        return results


async def drain_once(
    backend: str, url: str, latency: float, deployment_ids: list[int]
) -> DrainResult:
    private_key = private_key_pem()
    fake = await start_fake_github(private_key, latency)
    try:
        with tempfile.TemporaryDirectory(prefix="tarmac-drain-") as scratch:
            key_path = Path(scratch) / "app.pem"
            key_path.write_text(private_key)
            config = Path(scratch) / "tarmac.yml"
            config.write_text(PROJECTS_YAML)
            env = {
                "TARMAC_GITHUB_API_URL": fake.url,
                "TARMAC_GITHUB_PRIVATE_KEY_PATH": str(key_path),
                "TARMAC_LOG_LEVEL": "WARNING",
            }
            async with tarmac_server(url, config=config, env_extra=env) as server:
                drained = await _wait_for_effects(fake.github)
                if drained:
                    await _wait_for_empty_outbox(url)
                cpu_seconds = _cpu_seconds(server.pid)
        effects = [c for c in fake.github.calls if _effect(c) is not None]
        seconds = effects[-1].at + latency - effects[0].at if effects else math.inf
        problems = [] if drained else [f"not drained in {DRAIN_TIMEOUT_SECONDS} s"]
        problems += check_order(fake.github, deployment_ids) if drained else []
        problems += [f"GitHub would refuse: {v}" for v in fake.github.violations[:3]]
        if len(effects) != CALLS:
            problems.append(f"{len(effects)} effects reached the fake, not {CALLS}")
        return DrainResult(backend, latency, len(effects), seconds, problems, cpu_seconds)
    finally:
        await fake.runner.cleanup()


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (the machine is shared: a low rate with
    little CPU used means the server waited, a low rate with a busy server means it ran short)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _wait_for_effects(github: FakeGitHub) -> bool:
    """Whether every effect reached the fake before DRAIN_TIMEOUT_SECONDS (the rate is then
    measured over what did)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
    while sum(1 for c in github.calls if _effect(c) is not None) < CALLS:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


async def _wait_for_empty_outbox(url: str) -> None:
    deadline = time.monotonic() + 30
    query = "SELECT count(*) FROM outbox WHERE state = 'pending'"
    while await query_int(url, query) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError("effects reached GitHub but the outbox still holds pending items")
        await asyncio.sleep(0.1)


def rows_for(result: DrainResult) -> Row:
    target = TARGETS[result.latency]
    ordered = "in order, exactly once" if not result.problems else "; ".join(result.problems)
    return Row(
        SECTION,
        f"{result.backend} calls/s, {result.latency * 1000:g} ms GitHub latency",
        round(result.rate, 1),
        "calls/s",
        f">= {target:g}",
        result.rate >= target and not result.problems,
        f"{result.calls:,} calls over {DEPLOYMENTS:,} deployments in {result.seconds:.1f} s, "
        f"server CPU {result.cpu_seconds:.1f} s; {ordered}",
    )


async def run(backends: tuple[str, ...] = BACKENDS) -> list[Row]:
    rows = []
    for backend in backends:
        for result in await drain_on(backend):
            rate = f"{result.rate:.0f} calls/s"
            print(f"  {backend}, {result.latency * 1000:g} ms: {rate}", flush=True)
            rows.append(rows_for(result))
    return rows


if __name__ == "__main__":
    import sys

    print_table(asyncio.run(run(tuple(sys.argv[1:]) or BACKENDS)))
