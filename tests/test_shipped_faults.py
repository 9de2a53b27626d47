"""Pull-request notes through SIGKILL, against the real `tarmac serve` (make soak): each round
merges two pull requests, makes a candidate, and reports it successful in staging, then in
production; the process is killed while GitHub holds the answer to a note's POST (the comment
is made, Tarmac has not heard so), and once more at a random moment. At the end each pull
request has exactly one Tarmac note, saying where it runs."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.domain.pull_request_notes import NOTE_MARKER
from tests.fake_github import FakeGitHub
from tests.fault_workload import outbox_settled
from tests.figures import record_figure
from tests.processes import app_env, eventually, start_server, stop_server
from tests.test_cli import created_token, free_port, run_tarmac
from tests.test_faults import LEASE_SECONDS

pytestmark = pytest.mark.soak

ROUNDS = 5
COMMENTS = r"/repos/acme/backend/issues/\d+/comments$"
PROJECTS = """projects:
  - name: Svc
    repo: acme/backend
    environments:
      - name: staging
      - name: production
        production: true
"""


class Ci:
    """A pipeline talking to whichever `tarmac serve` is up: a request that gets no answer
    (the process was killed) is sent again once it is back; every write is idempotent."""

    def __init__(self, http: aiohttp.ClientSession, base: str, token: str) -> None:
        self.http = http
        self.base = base
        self.headers = {"Authorization": f"Bearer {token}"}

    async def send(self, method: str, path: str, body: dict[str, Any], key: str) -> int:
        headers = {**self.headers, "Idempotency-Key": key}
        while True:
            try:
                async with self.http.request(
                    method, self.base + path, json=body, headers=headers
                ) as answer:
                    if answer.status < 500:
                        return answer.status
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)

    async def candidate(self, version: str, commit: str) -> None:
        body = {"repo": "acme/backend", "commit": commit}
        status = await self.send("POST", f"/api/releases/Svc/releases/{version}", body, version)
        assert status == 201, status

    async def succeeded(self, environment: str, version: str) -> None:
        path = f"/api/releases/Svc/environments/{environment}/deployments"
        body = {"release_candidate_version": version, "status": "success"}
        status = await self.send("PATCH", path, body, f"{environment}:{version}")
        assert status in (200, 201), status


def notes(fake: FakeGitHub) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for comment in fake.comments:
        if NOTE_MARKER in comment["body"]:
            found.setdefault(comment["issue_number"], []).append(comment)
    return found


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_killed_while_a_note_is_posted_no_pull_request_gets_two(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, github_private_key: str
) -> None:
    config = tmp_path / "tarmac.yml"
    config.write_text(PROJECTS)
    env = app_env(
        database_url=database_url,
        config=config,
        fake_github=fake_github,
        private_key=github_private_key,
        outbox_lease_seconds=LEASE_SECONDS,
        github_content_interval_seconds="0.05",
    )
    token = created_token(run_tarmac("token", "create", "ci", env=env, cwd=tmp_path))
    port = free_port()
    chance = random.Random(random.randrange(2**32))
    # GitHub makes the comment, then takes its time to answer: a kill now loses the answer.
    fake_github.slow[COMMENTS] = 0.5
    history = fake_github.history("acme/backend")
    server = await start_server(env, tmp_path, port)
    kills = 0
    merged: dict[int, str] = {}  # pull request -> the version that first holds it

    async def kill_and_restart() -> None:
        nonlocal server, kills
        os.kill(server.pid, signal.SIGKILL)
        await asyncio.to_thread(server.wait, 10)
        kills += 1
        server = await start_server(env, tmp_path, port)

    try:
        async with aiohttp.ClientSession() as http:
            ci = Ci(http, f"http://127.0.0.1:{port}", token)
            await ci.candidate("v0-rc1", history.tip or "")
            for environment in ("staging", "production"):
                await ci.succeeded(environment, "v0-rc1")
            for round_ in range(1, ROUNDS + 1):
                version = f"v{round_}-rc1"
                for n in range(2):
                    merged[history.merge_pull_request(f"R{round_} #{n}", [[f"{round_}/{n}"]])] = (
                        version
                    )
                await ci.candidate(version, history.tip or "")
                for environment in ("staging", "production"):
                    posted = len(fake_github.calls_to("POST", COMMENTS))
                    await ci.succeeded(environment, version)
                    if environment == "staging":
                        # Killed while GitHub holds back the answer to the first new note.
                        await eventually(
                            lambda posted=posted: (
                                len(fake_github.calls_to("POST", COMMENTS)) > posted
                            ),
                            "a note posted",
                            60,
                        )
                        await asyncio.sleep(0.2)
                    else:
                        await asyncio.sleep(chance.uniform(0.0, 0.4))
                    await kill_and_restart()
            await outbox_settled(fake_github, database_url, deadline=120)
    finally:
        await stop_server(server)

    found = notes(fake_github)
    assert set(found) == set(merged)
    for number, version in merged.items():
        [note] = found[number]  # exactly one, whatever the kills cut
        assert f"- staging ✅ `{version}` since" in note["body"]
        assert f"- production ✅ `{version}` since" in note["body"]
    posts = len(fake_github.calls_to("POST", COMMENTS))
    # The kills did cut notes mid-call: their next attempts looked for what they had posted.
    lookups = len(fake_github.calls_to("GET", COMMENTS))
    assert lookups >= 1
    record_figure("pull-request notes: kills", "lookups after a lost answer", lookups)
    record_figure("pull-request notes: kills", "kills", kills)
    record_figure("pull-request notes: kills", "notes", len(found))
    record_figure("pull-request notes: kills", "POSTs of notes", posts)
