"""The `tarmac` command as an operator runs it: a real process, real files, real databases."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from api.app import create_app
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.models import ApiToken
from tests.conftest import PROJECTS_YAML, Api
from tests.leak_check import register_secret
from tests.openapi_conformance import OpenApiConformance

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO_ROOT / "tarmac.example.yml"
_INSTALLED = Path(sys.executable).parent / "tarmac"
TARMAC = [str(_INSTALLED)] if _INSTALLED.exists() else [sys.executable, "-m", "bot"]
COMMAND_TIMEOUT = 60
SERVER_START_TIMEOUT = 30


def tarmac_env(**settings: str | Path) -> dict[str, str]:
    """This process's environment without any TARMAC_* setting, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TARMAC_")}
    env.update({f"TARMAC_{name.upper()}": str(value) for name, value in settings.items()})
    return env


def run_tarmac(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TARMAC, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


# Ports for the servers tests start as processes: each pytest-xdist worker takes them from a
# range of its own, below Linux's ephemeral range (32768 and up), so no other worker and no
# socket bound to port 0 can take one between the check here and the server's bind. Two suites
# run side by side on one machine (two checkouts) set TARMAC_TEST_PORT_BASE apart, with room
# for their workers.
PORT_RANGE_START = int(os.environ.get("TARMAC_TEST_PORT_BASE", "21000"))
PORTS_PER_WORKER = 1500
_port_offsets = itertools.count()


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    start = PORT_RANGE_START + int(worker or 0) * PORTS_PER_WORKER
    for _ in range(PORTS_PER_WORKER):
        port = start + next(_port_offsets) % PORTS_PER_WORKER
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue  # something else of this machine's listens there
            return port
    raise RuntimeError(f"no free port in {start}..{start + PORTS_PER_WORKER - 1}")


@dataclass
class HttpReply:
    status: int
    body: Any


def http(
    method: str, url: str, *, token: str | None = None, body: Any = None, timeout: float = 5
) -> HttpReply:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return HttpReply(response.status, json.loads(response.read() or b"null"))
    except urllib.error.HTTPError as error:
        return HttpReply(error.code, json.loads(error.read() or b"null"))


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base_url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def tarmac_server(env: dict[str, str], cwd: Path) -> Iterator[Server]:
    """`tarmac serve` on a free loopback port, answering /healthz; killed if still running."""
    port = free_port()
    log = cwd / f"serve-{port}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*TARMAC, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    try:
        wait_until_healthy(server)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def wait_until_healthy(server: Server) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"tarmac serve exited with {server.process.returncode}:\n{server.output()}")
        try:
            reply = http("GET", server.base_url + "/healthz", timeout=1)
        except OSError:
            reply = None
        if reply is not None and reply.status == 200:
            assert reply.body == {"status": "ok"}
            return
        if time.monotonic() > deadline:
            pytest.fail(f"tarmac serve did not answer /healthz in time:\n{server.output()}")
        time.sleep(0.05)


def created_token(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    token = result.stdout.splitlines()[-1]
    assert token.startswith("tarmac_")
    assert len(token) >= 43
    assert token.strip() == token
    assert " " not in token
    return register_secret(token)


def _bytes_of_files_in(directory: Path) -> bytes:
    """Everything SQLite wrote: the database file, its WAL and shared-memory files."""
    return b"".join(p.read_bytes() for p in directory.iterdir() if p.is_file())


# --- configuration --------------------------------------------------------------------------


def test_check_config_accepts_the_example_file(tmp_path: Path) -> None:
    result = run_tarmac("check-config", env=tarmac_env(config=EXAMPLE_CONFIG), cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{EXAMPLE_CONFIG}: OK (2 projects, 3 environments)"
    assert result.stderr == ""


def test_check_config_reports_every_problem_and_fails(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "projects:\n"
        "  - name: Backend\n    repo: backend\n    environments: [{name: production}]\n"
        "  - name: Frontend\n    repo: acme/web\n    colour: red\n"
        "    environments: [{name: production, timeout_minutes: 0}]\n"
    )
    # The path argument wins over TARMAC_CONFIG, which here names a good file.
    result = run_tarmac(
        "check-config", str(broken), env=tarmac_env(config=EXAMPLE_CONFIG), cwd=tmp_path
    )

    assert result.returncode != 0
    assert "OK" not in result.stdout
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines == [
        f"error: {broken}: project 'Backend': repo: must be owner/name, e.g. acme/backend",
        f"error: {broken}: project 'Frontend': environments[0].timeout_minutes: "
        "Input should be greater than or equal to 1",
        f"error: {broken}: project 'Frontend': colour: unknown key",
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("port", "eighty"),
        ("database_url", "mysql://localhost/tarmac"),
        ("database_url", "postgresql+asyncpg://postgres@127.0.0.1:5432/test?sslmode=always"),
        ("database_statement_timeout", "0"),
        ("header_timeout", "0"),
    ],
)
def test_an_invalid_setting_is_a_clear_error(tmp_path: Path, name: str, value: str) -> None:
    env = tarmac_env(config=EXAMPLE_CONFIG, **{name: value})
    result = run_tarmac("migrate", env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: TARMAC_{name.upper()}: ")
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_python_m_bot_shows_help(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--help"],
        env=tarmac_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: tarmac ")
    for command in ("serve", "migrate", "check-config", "token"):
        assert command in result.stdout


# --- migrate ----------------------------------------------------------------------------------


def test_migrate_creates_a_fresh_sqlite_file_and_then_has_nothing_to_do(tmp_path: Path) -> None:
    database = tmp_path / "fresh.db"
    env = tarmac_env(database_url=sqlite_url(database), config=tmp_path / "absent.yml")

    first = run_tarmac("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("database at revision ")
    assert "(unchanged)" not in first.stdout

    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"projects", "environments", "deployments", "api_tokens", "alembic_version"} <= tables

    again = run_tarmac("migrate", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().endswith("(unchanged)")


def test_a_database_migrated_by_a_newer_tarmac_is_refused_and_left_alone(tmp_path: Path) -> None:
    database = tmp_path / "newer.db"
    projects = tmp_path / "tarmac.yml"
    projects.write_text(PROJECTS_YAML)
    env = tarmac_env(database_url=sqlite_url(database), config=projects)
    assert run_tarmac("migrate", env=env, cwd=tmp_path).returncode == 0
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0999'")

    for command in (["migrate"], ["token", "list"], ["serve", "--port", str(free_port())]):
        result = run_tarmac(*command, env=env, cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        [line] = result.stderr.splitlines()
        assert line.startswith(
            "error: the database is at schema revision 0999, which this Tarmac does not know"
        )
        assert "restore a backup taken before the upgrade" in line
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("0999",)
        ]


# --- tokens -----------------------------------------------------------------------------------


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(PROJECTS_YAML)
    return path


@pytest.mark.both_databases
async def test_a_token_made_on_a_fresh_database_works_until_revoked(
    empty_database_url: str,
    backend: str,
    tmp_path: Path,
    projects_file: Path,
    aiohttp_client: Any,
    conformance: OpenApiConformance,
) -> None:
    env = tarmac_env(database_url=empty_database_url, config=projects_file)
    work = tmp_path / "cwd"
    work.mkdir()

    created = run_tarmac(
        "token", "create", "deployer", "--project", "Backend", "--actor", "a@b.c",
        env=env, cwd=work,
    )  # fmt: skip
    token = created_token(created)
    assert token not in created.stderr

    # It is a bearer token for the app, within its scope.
    app = create_app(
        Settings(database_url=empty_database_url, config=projects_file), background_work=False
    )
    client: TestClient[Any, Any] = await aiohttp_client(app)
    api = Api(client, conformance)
    api.token = token
    assert (await api.get("/api/releases/Backend/environments")).status == 200
    assert (await api.get("/api/releases/Frontend/environments")).status == 403
    created_rc = await api.create_rc("v1.0.0-rc1")
    assert created_rc.status == 201, created_rc.body
    deployed = await api.deploy("staging", "v1.0.0-rc1")
    assert deployed.body["actor"] == "a@b.c"

    # Only its SHA-256 is stored.
    db = Database.from_url(empty_database_url)
    try:
        async with db.read() as session:
            (row,) = (await session.scalars(select(ApiToken))).all()
    finally:
        await db.dispose()
    assert row.name == "deployer"
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.projects == ["Backend"]
    assert row.actor == "a@b.c"
    assert row.last_used_at is not None
    if backend == "sqlite":
        stored = _bytes_of_files_in(tmp_path)
        assert row.token_hash.encode() in stored  # the right files were read
        assert token.encode() not in stored
        assert token.removeprefix("tarmac_").encode() not in stored

    # The list shows who and what, never the secret.
    listed = run_tarmac("token", "list", env=env, cwd=work)
    assert listed.returncode == 0, listed.stderr
    assert token not in listed.stdout + listed.stderr
    assert token.removeprefix("tarmac_") not in listed.stdout
    header, *rows = listed.stdout.splitlines()
    assert header.split() == ["NAME", "PROJECTS", "ACTOR", "LAST", "USED"]
    (line,) = rows
    name, scope, actor, last_used = line.split()
    assert (name, scope, actor) == ("deployer", "Backend", "a@b.c")
    assert last_used.startswith(row.last_used_at.isoformat(timespec="seconds")[:16])

    # Names are unique.
    duplicate = run_tarmac("token", "create", "deployer", env=env, cwd=work)
    assert duplicate.returncode != 0
    assert "tarmac_" not in duplicate.stdout
    assert "deployer" in duplicate.stderr
    assert "Traceback" not in duplicate.stderr

    revoked = run_tarmac("token", "revoke", "deployer", env=env, cwd=work)
    assert revoked.returncode == 0, revoked.stderr
    assert (await api.get("/api/releases/Backend/environments")).status == 401

    unknown = run_tarmac("token", "revoke", "deployer", env=env, cwd=work)
    assert unknown.returncode != 0
    assert unknown.stderr.strip() == "error: no token named 'deployer'"


def test_a_token_for_a_project_not_in_the_file_is_refused(
    tmp_path: Path, projects_file: Path
) -> None:
    database = tmp_path / "t.db"
    env = tarmac_env(database_url=sqlite_url(database), config=projects_file)

    result = run_tarmac(
        "token", "create", "ci", "--project", "Backend", "--project", "Nope", env=env, cwd=tmp_path
    )

    assert result.returncode != 0
    assert "tarmac_" not in result.stdout
    assert "Nope" in result.stderr
    assert "Backend" not in result.stderr
    assert str(projects_file) in result.stderr
    assert "Traceback" not in result.stderr
    assert not database.exists()


def test_a_token_name_that_cannot_be_a_name_is_refused(tmp_path: Path, projects_file: Path) -> None:
    env = tarmac_env(database_url=sqlite_url(tmp_path / "t.db"), config=projects_file)

    result = run_tarmac("token", "create", "two words", env=env, cwd=tmp_path)

    assert result.returncode != 0
    assert "tarmac_" not in result.stdout
    assert "two words" in result.stderr


def test_token_commands_next_to_a_running_server(tmp_path: Path) -> None:
    """The CLI and a server share one SQLite file: a token made or revoked while the server
    runs takes effect on its next request."""
    env = tarmac_env(database_url=sqlite_url(tmp_path / "shared.db"), config=EXAMPLE_CONFIG)
    with tarmac_server(env, tmp_path) as server:
        token = created_token(run_tarmac("token", "create", "live", env=env, cwd=tmp_path))
        environments = server.base_url + "/api/releases/Backend/environments"
        reply = http("GET", environments, token=token)
        assert reply.status == 200
        assert [e["name"] for e in reply.body] == ["staging", "production"]

        listed = run_tarmac("token", "list", env=env, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert token not in listed.stdout
        name, scope, actor, last_used = listed.stdout.splitlines()[1].split()
        assert (name, scope, actor) == ("live", "*", "-")
        assert last_used != "never"

        revoked = run_tarmac("token", "revoke", "live", env=env, cwd=tmp_path)
        assert revoked.returncode == 0, revoked.stderr

        assert http("GET", environments, token=token).status == 401
        assert server.process.poll() is None


def test_the_version_is_the_package_version_everywhere(
    tmp_path: Path, openapi_document: dict[str, Any]
) -> None:
    with (Path(__file__).parents[1] / "pyproject.toml").open("rb") as project_file:
        declared = tomllib.load(project_file)["project"]["version"]

    result = run_tarmac("--version", env=tarmac_env(), cwd=tmp_path)

    assert (result.returncode, result.stdout) == (0, f"tarmac {declared}\n")
    assert openapi_document["info"]["version"] == declared
