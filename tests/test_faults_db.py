"""The database unreachable when `tarmac serve` starts, and lost while it runs (issue 5 §1):
PostgreSQL behind a TCP proxy that the test cuts and restores."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.engine import make_url

from api.app import create_app
from bot.settings import Settings
from bot.storage.db import Database
from tests.conftest import SHA_A, SHA_B, Api, make_token, sign_webhook
from tests.fake_github import FakeGitHub, Run
from tests.figures import record_figure
from tests.openapi_conformance import OpenApiConformance
from tests.processes import TcpProxy, app_env, eventually, server_logs, start_server, stop_server
from tests.test_cli import (
    EXAMPLE_CONFIG,
    created_token,
    free_port,
    run_tarmac,
    tarmac_env,
)
from tests.test_github_workflow_runs import run_event

# SQL is what these tests check: both databases in make test (tests/databases.py).
pytestmark = pytest.mark.both_databases

PASSWORD = "s3cret-Pa55word"
EXIT_DATABASE_UNREACHABLE = 3
DATABASE_UNAVAILABLE = {"error": "Database unavailable, try again"}


def through(database_url: str, port: int, password: str | None = None) -> str:
    """The same database, reached through 127.0.0.1:`port`."""
    url = make_url(database_url).set(host="127.0.0.1", port=port)
    if password is not None:
        url = url.set(password=password)
    return url.render_as_string(hide_password=False)


def postgres_port(database_url: str) -> int:
    return make_url(database_url).port or 5432


def test_serve_gives_up_on_an_unreachable_database_with_its_own_exit_code(
    tmp_path: Path,
) -> None:
    nothing_listens = free_port()
    url = f"postgresql+asyncpg://tarmac:{PASSWORD}@127.0.0.1:{nothing_listens}/tarmac"
    env = tarmac_env(database_url=url, config=EXAMPLE_CONFIG, database_start_timeout="3")

    started = time.monotonic()
    result = run_tarmac("serve", "--port", str(free_port()), env=env, cwd=tmp_path)
    took = time.monotonic() - started

    output = result.stdout + result.stderr
    attempts = [line for line in output.splitlines() if "database unreachable (attempt" in line]
    record_figure("faults: database at start", "attempts before giving up", len(attempts))
    record_figure("faults: database at start", "gave up after (s)", took)
    assert result.returncode == EXIT_DATABASE_UNREACHABLE, output
    assert len(attempts) >= 3, output
    assert all(f"127.0.0.1', {nothing_listens}" in line for line in attempts), attempts
    assert "giving up after 3 s (TARMAC_DATABASE_START_TIMEOUT)" in attempts[-1]
    assert PASSWORD not in output
    assert "Traceback" not in output
    assert "serving on" not in output
    assert took < 3 + 20  # the timeout, and the interpreter's start on a busy machine


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_serve_waits_for_a_database_that_comes_up_late(
    tmp_path: Path, database_url: str
) -> None:
    proxy = TcpProxy("127.0.0.1", postgres_port(database_url), free_port())
    env = tarmac_env(
        database_url=through(database_url, proxy.port, PASSWORD),
        config=EXAMPLE_CONFIG,
        database_start_timeout="30",
    )
    port = free_port()
    starting = asyncio.create_task(start_server(env, tmp_path, port))
    try:
        await eventually(
            lambda: "database unreachable (attempt 2, " in server_logs(tmp_path),
            "a second attempt on the unreachable database",
        )
        assert not starting.done()
        await proxy.start()
        server = await starting
        assert await stop_server(server) == 0
    finally:
        starting.cancel()
        await proxy.close()

    output = server_logs(tmp_path)
    assert "database unreachable (attempt 2, " in output
    assert "database reachable after " in output
    assert PASSWORD not in output
    assert "Traceback" not in output


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_losing_the_database_answers_503_and_it_recovers_without_a_restart(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, github_private_key: str
) -> None:
    proxy = TcpProxy("127.0.0.1", postgres_port(database_url), free_port())
    await proxy.start()
    env = app_env(
        database_url=through(database_url, proxy.port),
        config=EXAMPLE_CONFIG,
        fake_github=fake_github,
        private_key=github_private_key,
    )
    # In a thread: the proxy it goes through runs on this event loop.
    token = created_token(
        await asyncio.to_thread(run_tarmac, "token", "create", "ci", env=env, cwd=tmp_path)
    )
    port = free_port()
    server = await start_server(env, tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    releases = base + "/api/releases/Backend/releases"
    auth = {"Authorization": f"Bearer {token}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as http:

            async def send(method: str, url: str, body: object = None) -> tuple[int, object]:
                async with http.request(method, url, json=body, headers=auth) as reply:
                    return reply.status, await reply.json()

            assert (await send("POST", releases + "/v1-rc1", rc(SHA_A)))[0] == 201

            await proxy.cut()
            cut_at = time.monotonic()
            answers = {
                "create": await send("POST", releases + "/v2-rc1", rc(SHA_B)),
                "deploy": await send(
                    "POST",
                    base + "/api/releases/Backend/environments/staging/deployments",
                    {"release_candidate_version": "v1-rc1"},
                ),
                "read": await send("GET", releases + "/v1-rc1"),
                "list": await send("GET", releases),
                "webhook": await delivery(http, base),
            }
            async with http.get(base + "/readyz") as reply:
                ready = (reply.status, await reply.json())
            answered_in = time.monotonic() - cut_at

            await proxy.restore()
            after = {
                "read": await send("GET", releases + "/v1-rc1"),
                "half-written": await send("GET", releases + "/v2-rc1"),
                "create": await send("POST", releases + "/v2-rc1", rc(SHA_B)),
            }
            async with http.get(base + "/readyz") as reply:
                ready_again = reply.status
        assert server.poll() is None  # no restart
    finally:
        await stop_server(server)
        await proxy.close()

    record_figure("faults: database lost", "requests answered 503", len(answers))
    record_figure("faults: database lost", "all answered within (s)", answered_in)
    assert answers == dict.fromkeys(answers, (503, DATABASE_UNAVAILABLE))
    assert ready == (
        503,
        {"status": "not ready", "checks": {**ready[1]["checks"], "database": "unreachable"}},
    )
    assert after["read"][0] == 200
    assert after["half-written"][0] == 404  # the create answered 503 left nothing behind
    assert after["create"][0] == 201
    assert ready_again == 200
    assert "Traceback" not in server_logs(tmp_path)


def rc(commit: str) -> dict[str, str]:
    return {"repo": "acme/backend", "commit": commit}


async def delivery(http: aiohttp.ClientSession, base: str) -> tuple[int, object]:
    """A signed `workflow_run` delivery, as GitHub sends it."""
    run = Run(id=1, repo="acme/backend", workflow="deploy.yml", ref="main", inputs={})
    body = json.dumps(run_event("in_progress", run)).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "workflow_run",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign_webhook(body),
    }
    async with http.post(base + "/api/github/webhooks", data=body, headers=headers) as reply:
        return reply.status, await reply.json()


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_database_that_stops_answering_gives_503_within_its_timeout_then_recovers(
    database_url: str, projects_file: Path, aiohttp_client: Any, conformance: OpenApiConformance
) -> None:
    """PostgreSQL keeps the connections open and answers nothing (a hung server, a network
    that drops packets): requests must not wait for TCP to give up."""
    proxy = TcpProxy("127.0.0.1", postgres_port(database_url), free_port())
    await proxy.start()
    settings = Settings(
        database_url=through(database_url, proxy.port),
        config=projects_file,
        database_statement_timeout=1.0,
    )
    try:
        api = Api(await aiohttp_client(create_app(settings, background_work=False)), conformance)
        direct = Database.from_url(database_url)
        api.token = await make_token(direct, "ci")
        await direct.dispose()
        assert (await api.create_rc("v1-rc1")).status == 201

        proxy.stall()
        stalled_at = time.monotonic()
        stalled = await api.create_rc("v2-rc1", SHA_B)
        answered_in = time.monotonic() - stalled_at
        proxy.flow()
        recovered = await api.create_rc("v3-rc1", SHA_B)
    finally:
        await proxy.close()

    record_figure("faults: database stalls", "503 after (s)", answered_in)
    assert (stalled.status, stalled.body) == (503, {"error": "Database unavailable, try again"})
    assert answered_in < 5
    assert recovered.status == 201, recovered.body


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_libpq_sslmode_in_the_url_is_asyncpgs_ssl(
    tmp_path: Path, database_url: str
) -> None:
    """`?sslmode=` as libpq and most hosting providers write it (here `disable`, as the local
    server has no certificate): Tarmac connects with it instead of failing at start."""
    url = database_url + "?sslmode=disable"
    result = run_tarmac(
        "migrate", env=tarmac_env(database_url=url, config=EXAMPLE_CONFIG), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
