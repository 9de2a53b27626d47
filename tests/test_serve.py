"""`tarmac serve` as a process: it starts on a fresh database, answers, and stops cleanly on
SIGTERM; with a broken projects file it refuses to start."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.conftest import SHA_A
from tests.test_cli import (
    EXAMPLE_CONFIG,
    created_token,
    free_port,
    http,
    run_tarmac,
    sqlite_url,
    tarmac_env,
    tarmac_server,
)

SHUTDOWN_TIMEOUT = 10


def test_serve_answers_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    database = tmp_path / "fresh.db"
    env = tarmac_env(database_url=sqlite_url(database), config=EXAMPLE_CONFIG)

    with tarmac_server(env, tmp_path) as server:
        assert database.exists()  # migrated at start
        token = created_token(
            run_tarmac("token", "create", "ci", "--actor", "ci@example.com", env=env, cwd=tmp_path)
        )
        backend = server.base_url + "/api/releases/Backend"

        assert http("GET", backend + "/environments").status == 401
        listed = http("GET", backend + "/environments", token=token)
        assert listed.status == 200
        assert [e["name"] for e in listed.body] == ["staging", "production"]

        created = http(
            "POST",
            backend + "/releases/v1.0.0-rc1",
            token=token,
            body={"repo": "acme/backend", "commit": SHA_A},
        )
        assert created.status == 201, created.body
        assert created.body["version"] == "v1.0.0-rc1"
        shown = http("GET", backend + "/releases/v1.0.0-rc1", token=token)
        assert shown.status == 200
        assert shown.body["commit"] == SHA_A

        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=SHUTDOWN_TIMEOUT) == 0, server.output()

    assert "Traceback" not in server.output()


def test_serve_with_a_broken_projects_file_never_listens(tmp_path: Path) -> None:
    broken = tmp_path / "tarmac.yml"
    broken.write_text(
        "projects:\n  - name: Backend\n    repo: backend\n    environments: [{name: production}]\n"
    )
    database = tmp_path / "never.db"
    env = tarmac_env(database_url=sqlite_url(database), config=broken)
    port = free_port()

    result = run_tarmac("serve", "--port", str(port), env=env, cwd=tmp_path)

    assert result.returncode != 0
    assert result.stderr.strip() == (
        f"error: {broken}: project 'Backend': repo: must be owner/name, e.g. acme/backend"
    )
    assert "serving on" not in result.stdout + result.stderr
    assert not database.exists()  # it stopped before touching the database
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
