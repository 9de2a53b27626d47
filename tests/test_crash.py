"""SIGKILL between accepting a deployment and delivering it to GitHub: after a restart the
GitHub side effects happen, exactly once (a subprocess test of the real `tarmac serve`)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import SHA_A
from tests.fake_github import FakeGitHub
from tests.fault_workload import outbox_settled
from tests.processes import app_env, call, eventually, start_server
from tests.test_cli import EXAMPLE_CONFIG, created_token, free_port, run_tarmac

# SQL is what these tests check: both databases in make test (tests/databases.py).
pytestmark = pytest.mark.both_databases


async def test_a_deploy_accepted_before_a_kill_reaches_github_once_after_restart(
    tmp_path: Path,
    database_url: str,
    fake_github: FakeGitHub,
    github_private_key: str,
) -> None:
    env = app_env(
        database_url=database_url,
        config=EXAMPLE_CONFIG,
        fake_github=fake_github,
        private_key=github_private_key,
        outbox_lease_seconds="3",
    )
    token = created_token(
        await asyncio.to_thread(run_tarmac, "token", "create", "ci", env=env, cwd=tmp_path)
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/releases/Backend"
    # GitHub takes its time: the kill lands while Tarmac waits for the answer, after GitHub
    # has the request — the case where the effect may or may not have happened.
    fake_github.slow[r"/deployments$"] = 1.0
    server = await start_server(env, tmp_path, port)
    try:
        async with aiohttp.ClientSession() as http:
            status, _ = await call(
                http,
                "POST",
                base + "/releases/v1-rc1",
                token,
                {"repo": "acme/backend", "commit": SHA_A},
            )
            assert status == 201
            status, deployed = await call(
                http,
                "POST",
                base + "/environments/production/deployments",
                token,
                {"release_candidate_version": "v1-rc1"},
            )
            assert status == 201
        await eventually(
            lambda: bool(fake_github.calls_to("POST", r"/deployments$")), "the GitHub call"
        )
        os.kill(server.pid, signal.SIGKILL)
        await asyncio.to_thread(server.wait, 10)
        await eventually(
            lambda: bool(fake_github.deployments.get("acme/backend")),
            "GitHub to finish the request it got before the kill",
        )

        fake_github.slow.clear()
        server = await start_server(env, tmp_path, port)
        created = fake_github.deployments["acme/backend"]
        github_id = created[0]["id"]
        await eventually(lambda: len(fake_github.runs) == 1, "the deploy workflow dispatch")
        await eventually(
            lambda: [s["state"] for s in fake_github.statuses[github_id]] == ["pending"],
            "the pending status",
        )
        await outbox_settled(fake_github, database_url)  # nothing left that could double

        assert len(fake_github.deployments["acme/backend"]) == 1
        assert created[0]["payload"]["tarmac_deployment_id"] == deployed["id"]
        assert len(fake_github.runs) == 1
        assert len(fake_github.statuses[github_id]) == 1
        assert fake_github.calls_to("GET", r"/deployments$")  # it checked before creating
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            await asyncio.to_thread(server.wait, 15)
