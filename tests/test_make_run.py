"""`make run` as a person runs it (on the port they ask for), and the `tarmac` command when
its reader stops reading: `tarmac token list | grep -q`, `| head -1`."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from bot.storage import tokens
from bot.storage.db import Database
from bot.storage.models import ApiToken
from tests.leak_check import register_secret
from tests.test_cli import (
    COMMAND_TIMEOUT,
    EXAMPLE_CONFIG,
    REPO_ROOT,
    SERVER_START_TIMEOUT,
    TARMAC,
    free_port,
    http,
    run_tarmac,
    sqlite_url,
    tarmac_env,
)

VENV = Path(sys.executable).parent.parent
# About 140 KB listed, more than a pipe holds (64 KiB): `token list` is still writing when
# `grep -q` has found its line and gone.
MANY_TOKENS = 1500


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.db"
    result = run_tarmac("migrate", env=tarmac_env(database_url=sqlite_url(path)), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return path


def add_tokens(path: Path, count: int) -> None:
    """`count` tokens listed after `demo` (their secrets are never needed, only their rows)."""

    async def add() -> None:
        db = Database.from_url(sqlite_url(path))
        rows = [
            {
                "name": f"t{n:05}",
                "token_hash": hashlib.sha256(f"unused {n}".encode()).hexdigest(),
                "projects": [],
                "created_at": datetime.now(UTC),
            }
            for n in range(count)
        ]
        async with db.write() as session:
            await session.execute(insert(ApiToken), rows)
        await db.dispose()

    asyncio.run(add())


def add_demo_token(path: Path) -> str:
    async def add() -> str:
        db = Database.from_url(sqlite_url(path))
        async with db.write() as session:
            secret = await tokens.create_token(
                session, name="demo", projects=[], actor_email=None, now=datetime.now(UTC)
            )
        await db.dispose()
        return register_secret(secret)

    return asyncio.run(add())


@pytest.fixture
def closed_stdout() -> Iterator[int]:
    """The write end of a pipe whose reader has gone: every write to it fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    yield write
    os.close(write)


def run_with_stdout(
    stdout: int, *args: str, env: dict[str, str], cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TARMAC, *args],
        env=env,
        cwd=cwd,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


# --- a reader that stops reading ------------------------------------------------------------


@pytest.mark.parametrize("command", [("token", "list"), ("check-config",)], ids=" ".join)
def test_a_closed_stdout_ends_the_command_quietly_with_the_pipes_exit_code(
    tmp_path: Path, database: Path, closed_stdout: int, command: tuple[str, ...]
) -> None:
    env = tarmac_env(database_url=sqlite_url(database), config=EXAMPLE_CONFIG)

    result = run_with_stdout(closed_stdout, *command, env=env, cwd=tmp_path)

    # Not "error: cannot use the database: Broken pipe", nor a traceback at exit.
    assert (result.returncode, result.stderr) == (141, "")


def test_a_token_nobody_could_see_is_not_created(
    tmp_path: Path, database: Path, closed_stdout: int
) -> None:
    env = tarmac_env(database_url=sqlite_url(database), config=EXAMPLE_CONFIG)

    result = run_with_stdout(closed_stdout, "token", "create", "lost", env=env, cwd=tmp_path)

    assert result.returncode == 141
    assert result.stderr == "error: standard output is closed; no token was created\n"
    listed = run_tarmac("token", "list", env=env, cwd=tmp_path)
    assert listed.stdout.splitlines()[1:] == []


def test_grep_q_on_a_long_token_list_reports_no_database_error(
    tmp_path: Path, database: Path
) -> None:
    env = tarmac_env(database_url=sqlite_url(database), config=EXAMPLE_CONFIG)
    add_demo_token(database)
    add_tokens(database, MANY_TOKENS)

    found = subprocess.run(
        ["sh", "-c", f"{' '.join(TARMAC)} token list | grep -q '^demo '"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )

    assert (found.returncode, found.stderr) == (0, "")


# --- make run -----------------------------------------------------------------------------


def make(*args: str, env: dict[str, str]) -> list[str]:
    """make in the checkout, with the suite's virtualenv taken as installed."""
    assert shutil.which("make"), "make is missing"
    return ["make", "-C", str(REPO_ROOT), f"VENV={VENV}", "-o", f"{VENV}/.installed", *args]


def test_make_run_serves_on_the_port_asked_for_and_says_so(tmp_path: Path, database: Path) -> None:
    env = tarmac_env(database_url=sqlite_url(database))
    demo = add_demo_token(database)
    add_tokens(database, MANY_TOKENS)  # `token list` outlasts a reader that stops at `demo`
    token_file = tmp_path / "demo-token"
    token_file.write_text(demo + "\n")
    port = free_port()
    output = tmp_path / "make-run.log"

    with output.open("wb") as sink:
        process = subprocess.Popen(
            make("run", f"PORT={port}", f"DEMO_TOKEN={token_file}", env=env),
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT + COMMAND_TIMEOUT
        while True:
            assert process.poll() is None, output.read_text()
            try:
                environments = http(
                    "GET",
                    f"http://127.0.0.1:{port}/api/releases/Backend/environments",
                    token=demo,
                    timeout=1,
                )
                break
            except OSError:
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.1)
    finally:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=20)
    printed = output.read_text()

    assert environments.status == 200
    assert f'curl -s -H "Authorization: Bearer $(cat {token_file})" ' in printed
    assert f"http://127.0.0.1:{port}/api/releases/Backend/environments" in printed
    assert f"http://127.0.0.1:{port}/api/releases/Backend/releases/v1.0.0-rc1" in printed
    assert "8080" not in printed
    assert "error" not in printed, printed
    assert token_file.read_text() == demo + "\n"  # the demo token was found, and kept


def test_make_run_takes_its_port_from_tarmac_port_too() -> None:
    env = {**tarmac_env(), "TARMAC_PORT": "9123"}

    planned = subprocess.run(
        make("-n", "run", env=env), env=env, capture_output=True, text=True, check=True
    ).stdout

    assert "http://127.0.0.1:9123/api/releases/Backend/environments" in planned
    assert "TARMAC_PUBLIC_URL=http://127.0.0.1:9123 " in planned
    assert "serve --port 9123" in planned
    assert "8080" not in planned
