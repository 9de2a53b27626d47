"""The webhook inbox under SIGKILL (bot/github/inbound/inbox.py): a burst of tag pushes to a real
`tarmac serve` that answers as soon as each delivery is stored (the default), killed while the
inbox holds a backlog and started again; the senders retry what got no answer with the same
`X-GitHub-Delivery`, as GitHub's redelivery does. Every delivery answered 2xx is handled exactly
once, and in the order the deliveries came."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import func, select

from bot.storage.db import Database
from bot.storage.models import ReleaseCandidate, WebhookDelivery, WebhookInboxItem
from tests.conftest import SHA_A, sign_webhook
from tests.fake_github import FakeGitHub
from tests.fault_workload import REPO, projects_yaml, version_of
from tests.figures import record_figure
from tests.processes import app_env, eventually, start_server, stop_server
from tests.test_calendar import until
from tests.test_cli import free_port
from tests.test_github_tags import tag_push

# SQL is what these tests check: both databases in make test (tests/databases.py).
pytestmark = pytest.mark.both_databases

TIMEOUT = aiohttp.ClientTimeout(total=10)
DEADLINE_SECONDS = 120
SENDERS = 16


class Sender:
    """Sends one delivery after another, each until it is answered 2xx."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.answered = 0
        self.retries = 0
        self.statuses: Counter[str] = Counter()
        self.last_delivery_id = ""

    async def send(self, index: int) -> None:
        body = json.dumps(tag_push(version_of(index), SHA_A, repo=REPO)).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": str(uuid.uuid4()),  # the same on every retry, as GitHub's
            "X-Hub-Signature-256": sign_webhook(body),
        }
        self.last_delivery_id = headers["X-GitHub-Delivery"]
        while True:
            try:
                async with self.http.post(self.url, data=body, headers=headers) as reply:
                    answer = await reply.json(content_type=None)
                    if 200 <= reply.status < 300:
                        self.answered += 1
                        self.statuses[answer["status"]] += 1
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            self.retries += 1
            await asyncio.sleep(0.05)  # a redelivery comes later; the server is restarting

    async def burst(self, indices: range) -> None:
        for index in indices:
            await self.send(index)


@pytest.mark.parametrize(("deliveries", "kills"), [(400, 3)])
async def test_a_killed_server_handles_every_stored_delivery_once_in_arrival_order(
    tmp_path: Path,
    database_url: str,
    fake_github: FakeGitHub,
    github_private_key: str,
    deliveries: int,
    kills: int,
) -> None:
    env = server_env(tmp_path, database_url, fake_github, github_private_key)
    chance = random.Random()
    port = free_port()
    server = await start_server(env, tmp_path, port)
    db = Database.from_url(database_url)
    backlogs: list[int] = []
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            sender = Sender(http, f"http://127.0.0.1:{port}/api/github/webhooks")
            # Sixteen senders side by side, each one delivery after another, as GitHub sends a
            # repository's events: a backlog builds up, and each sender's order must hold.
            burst = asyncio.gather(
                *(sender.burst(range(k, deliveries, SENDERS)) for k in range(SENDERS))
            )
            marks = sorted(chance.sample(range(deliveries // 10, deliveries * 9 // 10), kills))
            for mark in marks:
                await eventually(lambda m=mark: sender.answered >= m, f"{mark} answered", 60)
                await until_stored_unhandled(db)
                os.kill(server.pid, signal.SIGKILL)
                await asyncio.to_thread(server.wait, 10)
                backlogs.append(await count(db, WebhookInboxItem))
                server = await start_server(env, tmp_path, port)
            await asyncio.wait_for(burst, DEADLINE_SECONDS)

        await drained(db)
        async with db.read() as session:
            created = list(
                await session.scalars(
                    select(ReleaseCandidate.version).order_by(ReleaseCandidate.id)
                )
            )
        assert sorted(created) == sorted(version_of(n) for n in range(deliveries))  # once each
        for k in range(SENDERS):
            sent = [version_of(n) for n in range(k, deliveries, SENDERS)]
            assert [v for v in created if v in set(sent)] == sent  # in the order they came
        assert await count(db, WebhookDelivery) == deliveries
        # Answered once stored; a delivery stored before a kill took its answer is a duplicate
        # when sent again.
        assert set(sender.statuses) <= {"queued", "duplicate"}
        assert sender.statuses["queued"] >= deliveries - kills
    finally:
        await stop_server(server)
        await db.dispose()
    record_figure("faults: inbox", "deliveries", deliveries)
    record_figure("faults: inbox", "backlog at each kill", ", ".join(map(str, backlogs)))
    record_figure("faults: inbox", "sender retries", sender.retries)
    # At least one kill found stored deliveries not yet handled, or the test tested nothing.
    assert any(backlogs), backlogs


async def until_stored_unhandled(db: Database, deadline_seconds: float = 60) -> None:
    """Until the inbox holds a delivery not yet handled: a kill then (most likely) leaves one
    behind. On SQLite the reader keeps up with the senders, so a kill at a random moment often
    found the inbox empty."""
    deadline = time.monotonic() + deadline_seconds
    while await count(db, WebhookInboxItem) == 0:
        assert time.monotonic() < deadline, "no delivery ever waited in the inbox"
        await asyncio.sleep(0.005)


async def count(db: Database, model: type[object]) -> int:
    async with db.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def drained(db: Database) -> None:
    async def empty() -> bool:
        return await count(db, WebhookInboxItem) == 0

    await until(empty, "the inbox drained", DEADLINE_SECONDS)


async def test_a_delivery_writes_one_info_line_and_no_access_line(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, github_private_key: str
) -> None:
    env = server_env(tmp_path, database_url, fake_github, github_private_key)
    port = free_port()
    server = await start_server(env, tmp_path, port)
    db = Database.from_url(database_url)
    try:
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
            sender = Sender(http, f"http://127.0.0.1:{port}/api/github/webhooks")
            await sender.send(0)
            async with http.post(f"http://127.0.0.1:{port}/api/github/webhooks") as refused:
                assert refused.status == 401
        await drained(db)
    finally:
        await stop_server(server)
        await db.dispose()
    lines = server_log(tmp_path)
    about = [line for line in lines if sender.last_delivery_id in line]
    assert len(about) == 1, about
    assert " INFO bot.github.inbound.inbox: " in about[0]
    assert f"{version_of(0)} created; ready" in about[0], about[0]
    access = [line for line in lines if "aiohttp.access" in line and "webhooks" in line]
    assert [" 401 " in line for line in access] == [True], access  # a refusal keeps its line


def server_env(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, key: str
) -> dict[str, str]:
    """A `tarmac serve` with the GitHub App, one project of one environment, default settings."""
    config = tmp_path / "tarmac.yml"
    config.write_text(projects_yaml(1))
    return app_env(
        database_url=database_url, config=config, fake_github=fake_github, private_key=key
    )


def server_log(folder: Path) -> list[str]:
    [log] = folder.glob("serve-*.log")
    return log.read_text().splitlines()
