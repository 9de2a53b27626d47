"""What every bench section shares: the result rows, the table, the JSON file, and a real
`tarmac serve` on a fresh database (SQLite file or a new PostgreSQL database)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import asyncpg  # type: ignore[import-untyped]
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = REPO_ROOT / "bench" / "results.json"
_INSTALLED = Path(sys.executable).parent / "tarmac"
TARMAC = [str(_INSTALLED)] if _INSTALLED.exists() else [sys.executable, "-m", "bot"]
POSTGRES_URL = os.environ.get(
    "TARMAC_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30
BENCH_APP_ID = 4242
# The repository of GitHub's example payloads (push, create, workflow_run...).
BENCH_REPO = "Codertocat/Hello-World"
# One project on the payloads' repository; no build and no auto-deploy, so an RC made from a
# tag is ready at once and leaves no outbox work behind.
DEFAULT_PROJECTS_YAML = f"""
projects:
  - name: Bench
    repo: {BENCH_REPO}
    environments:
      - name: production
        production: true
"""


@dataclass
class Row:
    """One measured figure, beside its target."""

    section: str
    figure: str
    value: float
    unit: str
    target: str
    met: bool | None  # None: context only, no target
    context: str = ""


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) by nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value == int(value) and abs(value) >= 1:
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 10 else f"{value:,.1f}"


def print_table(rows: Sequence[Row]) -> None:
    headers = ("section", "figure", "value", "target", "met", "context")
    cells = [
        (
            r.section,
            r.figure,
            f"{_format_value(r.value)} {r.unit}".strip(),
            r.target or "-",
            {True: "yes", False: "NO", None: "-"}[r.met],
            r.context,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for cell in cells:
        print(line.format(*cell))


def write_results(rows: Sequence[Row], path: Path = RESULTS_PATH) -> None:
    document = [asdict(r) | {"value": None if math.isnan(r.value) else r.value} for r in rows]
    path.write_text(json.dumps(document, indent=2) + "\n")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


@dataclass
class Server:
    """A running `tarmac serve`."""

    url: str
    process: subprocess.Popen[bytes]
    api_token: str
    webhook_secret: str
    database_url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def peak_rss_mb(self) -> float:
        """VmHWM: the most resident memory the process has had so far, in MiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmHWM in /proc/<pid>/status")


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run(args: Sequence[str], env: dict[str, str], cwd: Path) -> str:
    result = subprocess.run(
        [*TARMAC, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"tarmac {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


async def wait_healthy(
    url: str, what: str, exited: Callable[[], bool], *, path: str = "/healthz"
) -> None:
    """Until `url` + `path` answers 200; RuntimeError naming `what` if the process `exited()`
    first or START_TIMEOUT_SECONDS pass."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    async with aiohttp.ClientSession() as http:
        while True:
            if exited():
                raise RuntimeError(f"{what} exited at start")
            try:
                async with http.get(url + path) as reply:
                    if reply.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start")
            await asyncio.sleep(0.05)


def _spawn_serve(env: dict[str, str], cwd: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen([*TARMAC, "serve"], env=env, cwd=cwd, stdout=log, stderr=log)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@asynccontextmanager
async def tarmac_server(
    database_url: str,
    *,
    env_extra: dict[str, str] | None = None,
    config: Path | None = None,
    github_app: bool = True,
) -> AsyncIterator[Server]:
    """Migrate `database_url`, start `tarmac serve` on it, yield it; SIGTERM at the end.

    The GitHub App is configured (a fresh RSA key, a random webhook secret); GitHub's API is
    `TARMAC_GITHUB_API_URL` from `env_extra`, or else a local port where nothing listens.
    Without `github_app`, no TARMAC_GITHUB_* is set: nothing is mirrored, no worker runs.
    """
    with tempfile.TemporaryDirectory(prefix="tarmac-bench-") as scratch:
        workdir = Path(scratch)
        if config is None:
            config = workdir / "tarmac.yml"
            config.write_text(DEFAULT_PROJECTS_YAML)
        key_path = workdir / "app.pem"
        key_path.write_text(private_key_pem())
        secret = secrets.token_hex(20)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TARMAC_")}
        env.update(
            {
                "TARMAC_DATABASE_URL": database_url,
                "TARMAC_CONFIG": str(config),
                "TARMAC_HOST": "127.0.0.1",
                "TARMAC_PORT": str(port),
                "TARMAC_GITHUB_APP_ID": str(BENCH_APP_ID),
                "TARMAC_GITHUB_PRIVATE_KEY_PATH": str(key_path),
                "TARMAC_GITHUB_WEBHOOK_SECRET": secret,
                "TARMAC_GITHUB_API_URL": f"http://127.0.0.1:{free_port()}",
            }
        )
        if not github_app:
            env = {k: v for k, v in env.items() if not k.startswith("TARMAC_GITHUB_")}
        env.update(env_extra or {})
        await asyncio.to_thread(_run, ["migrate"], env, workdir)
        # A name of its own: the same database may be served again (history tops it up).
        token_name = f"bench-{secrets.token_hex(4)}"
        created = await asyncio.to_thread(_run, ["token", "create", token_name], env, workdir)
        token = created.splitlines()[-1].strip()
        log_path = workdir / "serve.log"
        process = await asyncio.to_thread(_spawn_serve, env, workdir, log_path)
        url = f"http://127.0.0.1:{port}"
        try:
            await wait_healthy(
                url, f"tarmac serve (see {log_path})", lambda: process.poll() is not None
            )
            yield Server(url, process, token, secret, database_url, log_path)
        finally:
            await asyncio.to_thread(_stop, process)


def _admin_dsn(database: str | None = None) -> str:
    dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    return dsn if database is None else dsn.rsplit("/", 1)[0] + "/" + database


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(_admin_dsn(), timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@asynccontextmanager
async def fresh_postgres_database(name: str) -> AsyncIterator[str]:
    """A new, empty database on the local PostgreSQL, dropped afterwards; yields its URL."""
    database = f"tarmac_bench_{name}_{secrets.token_hex(4)}"
    await _admin(f'CREATE DATABASE "{database}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + database
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@asynccontextmanager
async def fresh_sqlite_database(name: str) -> AsyncIterator[str]:
    """A new SQLite file in a temporary directory, removed afterwards; yields its URL."""
    with tempfile.TemporaryDirectory(prefix=f"tarmac-bench-{name}-") as scratch:
        yield f"sqlite+aiosqlite:///{Path(scratch) / 'tarmac.db'}"


@asynccontextmanager
async def fresh_database(backend: str, name: str) -> AsyncIterator[str]:
    """`fresh_sqlite_database` or `fresh_postgres_database`, by backend name."""
    manager = fresh_sqlite_database if backend == "sqlite" else fresh_postgres_database
    async with manager(name) as url:
        yield url


@asynccontextmanager
async def copy_of_database(database_url: str, name: str) -> AsyncIterator[str]:
    """A copy of a bench database nobody is connected to (a SQLite file copy, or CREATE
    DATABASE ... TEMPLATE), removed afterwards; yields its URL."""
    if database_url.startswith("sqlite"):
        with tempfile.TemporaryDirectory(prefix=f"tarmac-bench-{name}-") as scratch:
            copy = Path(scratch) / "tarmac.db"
            shutil.copy(database_url.split(":///", 1)[1], copy)
            yield f"sqlite+aiosqlite:///{copy}"
        return
    database = f"tarmac_bench_{name}_{secrets.token_hex(4)}"
    template = database_url.rsplit("/", 1)[1]
    await _admin(f'CREATE DATABASE "{database}" TEMPLATE "{template}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + database
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def query_int(database_url: str, query: str) -> int:
    """One integer from a query on a bench database, SQLite or PostgreSQL (e.g. a row count)."""
    if database_url.startswith("sqlite"):
        path = database_url.split(":///", 1)[1]
        with sqlite3.connect(path) as connection:
            (value,) = connection.execute(query).fetchone()
        return int(value)
    database = database_url.rsplit("/", 1)[1]
    connection = await asyncpg.connect(_admin_dsn(database), timeout=10)
    try:
        value = await connection.fetchval(query)
    finally:
        await connection.close()
    return int(value)
