"""SQLite's file misbehaving under a running Tarmac, with real faults the kernel makes:

- an I/O-error window: the server's file size limit (RLIMIT_FSIZE, set from outside with
  prlimit) lowered to one byte, so the kernel refuses every write to the database (EFBIG,
  which SQLite reports as SQLITE_IOERR_WRITE) and raised again;
- a read-only window: the database file chmod 444, then 644 again. An open connection keeps
  writing (the kernel checks permissions when a file is opened), but one SQLite opens meanwhile
  is read-only for good.

Writes answer 503 while they fail, /readyz says so, and both recover when the fault ends,
without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import resource
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from api.keys import SERVICE
from bot.storage.db import Database
from tests.conftest import SHA_A, Api
from tests.test_cli import (
    EXAMPLE_CONFIG,
    SERVER_START_TIMEOUT,
    TARMAC,
    created_token,
    free_port,
    http,
    run_tarmac,
    sqlite_url,
    tarmac_env,
)

DEADLINE_SECONDS = 15
DATABASE_UNAVAILABLE = {"error": "Database unavailable, try again"}


# --- the faults ------------------------------------------------------------------------------


@contextlib.contextmanager
def file_size_limit(pid: int, limit: int) -> Iterator[None]:
    """Process `pid` may write no byte of a file past `limit` while this lasts (pipes are not
    files: its log, sent to a pipe, goes on)."""
    before = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, before[1]))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, before)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_CAPABILITY_VERSION_3 = 0x20080522
# CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: what lets root open a file its mode refuses.
_DAC_CAPABILITIES = (1 << 1) | (1 << 2)


@contextlib.contextmanager
def _file_modes_apply_to_this_thread() -> Iterator[None]:
    """Root opens any file whatever its mode; without these two capabilities in its effective
    set (they stay permitted, and come back after), the kernel applies the mode to root too.
    Capabilities are per thread on Linux: this is the event loop's thread, where the app's
    SQLite calls run (bot/storage/sqlite_inline.py)."""
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header = _CapHeader(_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    assert libc.capget(ctypes.byref(header), data) == 0, os.strerror(ctypes.get_errno())
    effective = data[0].effective
    data[0].effective = effective & ~_DAC_CAPABILITIES
    assert libc.capset(ctypes.byref(header), data) == 0, os.strerror(ctypes.get_errno())
    try:
        yield
    finally:
        data[0].effective = effective
        assert libc.capset(ctypes.byref(header), data) == 0, os.strerror(ctypes.get_errno())


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` cannot be opened for writing while this lasts."""
    mode = path.stat().st_mode
    path.chmod(0o444)
    try:
        with _file_modes_apply_to_this_thread():
            yield
    finally:
        path.chmod(mode)


# --- an I/O-error window under a real `tarmac serve` -----------------------------------------


class _Served:
    """`tarmac serve` whose output goes to a pipe (a file size limit does not stop a pipe),
    copied to serve-<port>.log when it stops, for the leak check."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.cwd = cwd
        self.process = subprocess.Popen(
            [*TARMAC, "serve", "--port", str(self.port)],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output: list[bytes] = []
        assert self.process.stdout is not None
        self._reader = threading.Thread(
            target=self.output.extend, args=(self.process.stdout,), daemon=True
        )
        self._reader.start()

    def wait_until_healthy(self) -> None:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            assert self.process.poll() is None, self.log()
            with contextlib.suppress(OSError):
                if http("GET", self.base_url + "/healthz", timeout=1).status == 200:
                    return
            assert time.monotonic() < deadline, "tarmac serve did not start:\n" + self.log()
            time.sleep(0.05)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)
        self._reader.join(timeout=10)
        (self.cwd / f"serve-{self.port}.log").write_bytes(b"".join(self.output))

    def log(self) -> str:
        return b"".join(self.output).decode(errors="replace")


def test_an_io_error_window_fails_writes_and_readiness_then_both_recover(
    tmp_path: Path,
) -> None:
    env = tarmac_env(database_url=sqlite_url(tmp_path / "tarmac.db"), config=EXAMPLE_CONFIG)
    token = created_token(run_tarmac("token", "create", "ci", env=env, cwd=tmp_path))
    server = _Served(env, tmp_path)
    versions = iter(range(1, 1000))

    def create() -> tuple[int, Any]:
        reply = http(
            "POST",
            f"{server.base_url}/api/releases/Frontend/releases/v{next(versions)}-rc1",
            token=token,
            body={"repo": "acme/monorepo", "commit": SHA_A},
        )
        return reply.status, reply.body

    def get(path: str) -> tuple[int, Any]:
        reply = http("GET", server.base_url + path, token=token)
        return reply.status, reply.body

    try:
        server.wait_until_healthy()
        assert create()[0] == 201
        assert get("/readyz")[0] == 200

        with file_size_limit(server.process.pid, 1):
            during = [create() for _ in range(3)]
            ready_during = get("/readyz")
            healthy_during = get("/healthz")
            read_during = get("/api/releases/Frontend/releases")

        deadline = time.monotonic() + DEADLINE_SECONDS
        while (ready_after := get("/readyz"))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.05)  # the probe /readyz runs, at most once a second
        after = [create()[0] for _ in range(5)]
        listed = get("/api/releases/Frontend/releases?per_page=100")
    finally:
        server.stop()

    assert during == [(503, DATABASE_UNAVAILABLE)] * 3, server.log()
    assert ready_during == (
        503,
        {
            "status": "not ready",
            "checks": {
                "database": "ok",
                "migrations": "ok",
                "database_writes": "failing: SQLITE_IOERR_WRITE",
            },
        },
    )
    # Reads go on: the pooled connection is kept (reopening would need a write).
    assert healthy_during == (200, {"status": "ok"})
    assert read_during[0] == 200
    assert ready_after[0] == 200, ready_after
    assert ready_after[1]["checks"]["database_writes"] == "ok"
    assert after == [201] * 5
    # The three refused during the window left nothing behind.
    assert sorted(r["version"] for r in listed[1]) == sorted(["v1", "v5", "v6", "v7", "v8", "v9"])
    assert "SQLITE_IOERR_WRITE" in server.log()


# --- a read-only window under the app ------------------------------------------------------


async def _hold_a_connection(db: Database, held: asyncio.Event, release: asyncio.Event) -> None:
    async with db.read() as session:
        await session.execute(text("SELECT 1"))
        held.set()
        await release.wait()


@pytest.mark.parametrize("backend", ["sqlite"])  # SQLite's file is what breaks here
async def test_connections_opened_while_the_file_was_read_only_are_replaced(
    api: Api, client: TestClient[Any, Any]
) -> None:
    db: Database = client.app[SERVICE].db
    path = Path(str(make_url(str(db.engine.url)).database))
    opened = 0

    def count(*_: Any) -> None:
        nonlocal opened
        opened += 1

    event.listen(db.engine.sync_engine, "connect", count)
    assert (await api.create_rc("v1-rc1")).status == 201

    with read_only(path):
        # Requests that overlap make the pool open connections of their own: read-only ones.
        opened = 0
        release = asyncio.Event()
        holds = [asyncio.Event() for _ in range(3)]
        holders = [asyncio.create_task(_hold_a_connection(db, h, release)) for h in holds]
        for held in holds:
            await asyncio.wait_for(held.wait(), DEADLINE_SECONDS)
        release.set()
        await asyncio.gather(*holders)
        read_only_connections = opened
    assert read_only_connections >= 2

    # Each one fails at most one write, and is replaced; without that they failed every write
    # they were handed, until a restart.
    first = [(await api.create_rc(f"v{n}-rc1")).status for n in range(2, 8)]
    then = [(await api.create_rc(f"v{n}-rc1")).status for n in range(8, 20)]
    ready = await api.get("/readyz")

    assert first.count(503) <= read_only_connections, first
    assert set(first) <= {201, 503}
    assert then == [201] * len(then)
    assert (ready.status, ready.body["checks"]["database_writes"]) == (200, "ok")
