"""Webhook to GitHub: how long after a delivery the GitHub call it implies leaves.

Two paths, each timed from the moment the webhook POST is sent to the moment the fake GitHub
(tests/fake_github.py, in this process) receives the call: a tag push → its build workflow's
dispatch, and that build's `workflow_run` completed → the auto-deploy's GitHub deployment.
Measured idle (one sample after another) and under load (200 deliveries/s of a `workflow_run`
that maps to nothing, sent alongside), on SQLite, on PostgreSQL, and on PostgreSQL with two
replicas (webhooks to one that runs no outbox worker, the other's worker delivering: it can
only learn of the work through LISTEN/NOTIFY). Beside each: the same with the wake after
commit switched off (`TARMAC_OUTBOX_WAKE=false`, a switch for this bench alone), which is the
worker's 0.5 s poll alone, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    Row,
    Server,
    fresh_database,
    percentile,
    print_table,
    private_key_pem,
    tarmac_server,
)
from bench.drain import start_fake_github
from tests.conftest import BACKEND_INSTALLATION
from tests.fake_github import FakeGitHub
from tests.github_material import examples_of
from tests.test_github_tags import tag_push
from tests.test_github_workflow_runs import run_event

SECTION = "latency"
WEBHOOK_PATH = "/api/github/webhooks"
REPO = "acme/backend"
SAMPLES = 200
BEFORE_SAMPLES = 40  # the poll alone: half a second each
LOAD_RATE = 200  # deliveries/s alongside, under load
TARGET_P50_MS = 50.0
TARGET_P99_MS = 150.0
WAIT_SECONDS = 10.0
PROJECTS_YAML = f"""
projects:
  - name: Backend
    repo: {REPO}
    build:
      workflow: build.yml
    environments:
      - name: staging
        deploy_workflow: deploy.yml
        auto_deploy: true
"""


@dataclass(frozen=True)
class Setup:
    name: str
    backend: str
    replicas: int
    wake: bool


SETUPS = (
    Setup("sqlite", "sqlite", 1, True),
    Setup("sqlite", "sqlite", 1, False),
    Setup("postgresql", "postgresql", 1, True),
    Setup("postgresql", "postgresql", 1, False),
    Setup("postgresql, 2 replicas", "postgresql", 2, True),
    Setup("postgresql, 2 replicas", "postgresql", 2, False),
)


def _headers(secret: str, event: str, body: bytes) -> dict[str, str]:
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": f"sha256={signature}",
    }


async def _post(
    http: aiohttp.ClientSession, server: Server, event: str, payload: dict[str, Any]
) -> float:
    """Send one delivery; returns when it was sent (time.monotonic)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    sent = time.monotonic()
    async with http.post(
        server.url + WEBHOOK_PATH, data=body, headers=_headers(server.webhook_secret, event, body)
    ) as reply:
        await reply.read()
        if reply.status not in (200, 202):
            raise RuntimeError(f"{event} answered {reply.status}")
    return sent


async def _arrival(github: FakeGitHub, start: int, method: str, suffix: str) -> float:
    """When the first call `method` to a path ending in `suffix` from calls[start:] arrived."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        for call in github.calls[start:]:
            if call.method == method and call.path.endswith(suffix):
                return call.at
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {method} …{suffix} within {WAIT_SECONDS} s")
        await asyncio.sleep(0.001)


async def _sample(
    http: aiohttp.ClientSession, server: Server, github: FakeGitHub, n: int, label: str
) -> tuple[float, float]:
    """One tag pushed and built: (ms to the build dispatch, ms to the auto-deployment)."""
    tag = f"v{label}.{n}.0-rc1"
    start = len(github.calls)
    sent = await _post(http, server, "push", tag_push(tag, f"{n + 1:040x}", repo=REPO))
    dispatched = await _arrival(github, start, "POST", "/build.yml/dispatches")
    [build] = [r for r in github.runs.values() if r.workflow == "build.yml" and r.ref == tag]
    start = len(github.calls)
    done = await _post(http, server, "workflow_run", run_event("completed", build, "success"))
    deployed = await _arrival(github, start, "POST", f"/repos/{REPO}/deployments")
    return (dispatched - sent) * 1000, (deployed - done) * 1000


async def _load(http: aiohttp.ClientSession, server: Server, stop: asyncio.Event) -> int:
    """LOAD_RATE deliveries/s of `workflow_run`s no project names, until `stop`."""
    examples = list(examples_of("workflow_run").values())
    sent = 0
    started = time.monotonic()
    tasks: set[asyncio.Task[float]] = set()
    while not stop.is_set():
        due = started + sent / LOAD_RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        task = asyncio.create_task(_post(http, server, "workflow_run", examples[sent % 2]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    await asyncio.gather(*tasks, return_exceptions=True)
    return sent


@asynccontextmanager
async def _replicas(setup: Setup, github: FakeGitHub, key: str) -> AsyncIterator[Server]:
    """The server the webhooks go to (with two replicas: the one without a worker)."""
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(fresh_database(setup.backend, "latency"))
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tarmac-lat-")))
        (scratch / "app.pem").write_text(key)
        config = scratch / "tarmac.yml"
        config.write_text(PROJECTS_YAML)
        env = {
            "TARMAC_GITHUB_API_URL": github.server_url,
            "TARMAC_GITHUB_PRIVATE_KEY_PATH": str(scratch / "app.pem"),
            "TARMAC_LOG_LEVEL": "WARNING",
            "TARMAC_GITHUB_CONTENT_INTERVAL_SECONDS": "0",
            "TARMAC_OUTBOX_WAKE": "true" if setup.wake else "false",
        }
        if setup.replicas == 2:
            await stack.enter_async_context(tarmac_server(url, config=config, env_extra=env))
            env = env | {"TARMAC_OUTBOX_WORKER": "false"}
        yield await stack.enter_async_context(tarmac_server(url, config=config, env_extra=env))


async def measure(setup: Setup) -> list[Row]:
    key = private_key_pem()
    fake = await start_fake_github(key, 0.0)
    fake.github.install(REPO, BACKEND_INSTALLATION)
    samples = SAMPLES if setup.wake else BEFORE_SAMPLES
    rows = []
    try:
        async with _replicas(setup, fake.github, key) as server, aiohttp.ClientSession() as http:
            for loaded in (False, True):
                stop = asyncio.Event()
                load = asyncio.create_task(_load(http, server, stop)) if loaded else None
                label = f"{int(loaded)}{int(setup.wake)}"
                measured = [
                    await _sample(http, server, fake.github, n, label) for n in range(samples)
                ]
                stop.set()
                if load is not None:
                    await load
                rows += _rows(setup, loaded, measured)
        violations = fake.github.violations[:3]
        if violations:
            raise RuntimeError(f"GitHub would refuse: {violations}")
    finally:
        await fake.runner.cleanup()
    return rows


def _rows(setup: Setup, loaded: bool, measured: list[tuple[float, float]]) -> list[Row]:
    rows = []
    when = f"under {LOAD_RATE} deliveries/s" if loaded else "idle"
    for path, values in (
        ("tag push → build dispatched", [m[0] for m in measured]),
        ("build completed → deployment created", [m[1] for m in measured]),
    ):
        p50, p99 = percentile(values, 50), percentile(values, 99)
        met = p50 <= TARGET_P50_MS and p99 <= TARGET_P99_MS
        rows.append(
            Row(
                SECTION,
                f"{path}, {setup.name}, {when}" + ("" if setup.wake else ", poll only (before)"),
                round(p50, 1),
                "ms p50",
                f"p50 <= {TARGET_P50_MS:g}, p99 <= {TARGET_P99_MS:g} ms" if setup.wake else "",
                met if setup.wake else None,
                f"p99 {p99:.1f} ms, {len(values)} samples",
            )
        )
    return rows


async def run(setups: tuple[Setup, ...] = SETUPS) -> list[Row]:
    rows = []
    for setup in setups:
        try:
            measured = await measure(setup)
        except RuntimeError as exc:
            # One setup's failure is a row of its own; the others are still measured.
            measured = [
                Row(
                    SECTION,
                    f"{setup.name}, wake={setup.wake}",
                    math.nan,
                    "ms p50",
                    "",
                    False if setup.wake else None,
                    f"failed: {exc}",
                )
            ]
        for row in measured:
            print(f"  {row.figure}: {row.value} ms p50, {row.context}", flush=True)
        rows += measured
    return rows


if __name__ == "__main__":
    import sys

    names = set(sys.argv[1:])
    chosen = tuple(s for s in SETUPS if not names or s.backend in names)
    print_table(asyncio.run(run(chosen)))
