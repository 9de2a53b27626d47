"""`tarmac backup`: taken while 20 clients write, it holds every write answered before it began,
and a server started on it (the restore) serves them."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import time
from pathlib import Path

import aiohttp

from tests.conftest import PROJECTS_YAML, SHA_A
from tests.processes import start_server, stop_server
from tests.test_cli import (
    created_token,
    free_port,
    run_tarmac,
    sqlite_url,
    tarmac_env,
)

CLIENTS = 20
WRITES_BEFORE_BACKUP = 200


async def test_a_backup_under_write_load_holds_every_acknowledged_write(tmp_path: Path) -> None:
    projects = tmp_path / "tarmac.yml"
    projects.write_text(PROJECTS_YAML)
    database = tmp_path / "tarmac.db"
    env = tarmac_env(database_url=sqlite_url(database), config=projects, log_level="WARNING")
    token = created_token(
        await asyncio.to_thread(run_tarmac, "token", "create", "ci", env=env, cwd=tmp_path)
    )
    port = free_port()
    server = await start_server(env, tmp_path, port)
    base = f"http://127.0.0.1:{port}/api/releases/Backend"
    headers = {"Authorization": f"Bearer {token}"}
    acknowledged: list[tuple[float, int]] = []  # (when the answer came, deployment id)
    stop = asyncio.Event()
    enough = asyncio.Event()

    async def client(http: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            async with http.post(
                f"{base}/environments/staging/deployments",
                json={"release_candidate_version": "v1-rc1"},
            ) as reply:
                assert reply.status == 201, await reply.text()
                body = await reply.json()
            acknowledged.append((time.monotonic(), body["id"]))
            if len(acknowledged) >= WRITES_BEFORE_BACKUP:
                enough.set()

    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(
                f"{base}/releases/v1-rc1", json={"repo": "acme/backend", "commit": SHA_A}
            ) as reply:
                assert reply.status == 201
            clients = [asyncio.create_task(client(http)) for _ in range(CLIENTS)]
            await enough.wait()
            began = time.monotonic()
            backed_up = await asyncio.to_thread(
                run_tarmac, "backup", str(tmp_path / "backups" / "tarmac.db"), env=env, cwd=tmp_path
            )
            ended = time.monotonic()
            await asyncio.sleep(0.2)  # writes go on after the backup too
            stop.set()
            await asyncio.gather(*clients)
    finally:
        assert await stop_server(server) == 0

    assert backed_up.returncode == 0, backed_up.stderr
    assert backed_up.stdout.startswith(f"backed up {database} to ")
    backup = tmp_path / "backups" / "tarmac.db"
    before = {deployment for answered, deployment in acknowledged if answered < began}
    during = [deployment for answered, deployment in acknowledged if began <= answered < ended]
    stored = deployments_in(backup)
    print(
        f"\nbackup under load: {len(before)} writes answered before it began, "
        f"{len(during)} during its {ended - began:.2f} s, {len(stored)} in the copy"
    )
    assert before <= stored
    assert len(during) > 0  # the clients really were writing while it ran

    # The restore: a server started on the copy serves what it holds.
    restored_env = {**env, "TARMAC_DATABASE_URL": sqlite_url(backup)}
    port = free_port()
    restored = await start_server(restored_env, tmp_path, port)
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            newest = max(before)
            async with http.get(
                f"http://127.0.0.1:{port}/api/releases/Backend/environments/staging/"
                f"deployments/{newest}"
            ) as reply:
                assert reply.status == 200
    finally:
        assert await stop_server(restored) == 0


def deployments_in(backup: Path) -> set[int]:
    """The deployment ids of a backup, which must be one complete, private, checked file."""
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert not Path(f"{backup}-wal").exists()
    with sqlite3.connect(f"file:{backup}?mode=ro", uri=True) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {row[0] for row in copy.execute("SELECT id FROM deployments")}


def test_backup_refuses_postgresql_and_names_pg_dump(tmp_path: Path) -> None:
    env = tarmac_env(
        database_url="postgresql+asyncpg://postgres@127.0.0.1:5432/test",
        config=tmp_path / "tarmac.yml",
    )

    result = run_tarmac("backup", str(tmp_path / "copy.db"), env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: tarmac backup copies SQLite databases; for PostgreSQL use pg_dump "
        "(docs/operations.md, Backups)"
    )
    assert not os.listdir(tmp_path)


def test_backup_of_a_missing_database_is_refused(tmp_path: Path) -> None:
    env = tarmac_env(
        database_url=sqlite_url(tmp_path / "nothing.db"), config=tmp_path / "tarmac.yml"
    )

    result = run_tarmac("backup", str(tmp_path / "copy.db"), env=env, cwd=tmp_path)

    assert (result.returncode, result.stderr.strip()) == (
        2,
        f"error: no database at {tmp_path / 'nothing.db'}",
    )
