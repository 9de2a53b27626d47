"""The built wheel is complete: installed away from the checkout, it migrates a database.

One slow test, run once (it needs no database backend of the suite's)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT = 300
# What a wheel built from the checkout must carry beyond the .py modules of bot/ and api/.
REQUIRED_FILES = [
    "bot/py.typed",
    "api/py.typed",
    "bot/storage/migrations/env.py",
    "bot/storage/migrations/script.py.mako",
    "bot/storage/migrations/versions/0001_initial_schema.py",
]
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests", "bench"
)


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_the_wheel_installed_elsewhere_migrates_a_fresh_database(tmp_path: Path) -> None:
    # Build from a copy, so the build leaves no build/ or egg-info behind in the checkout.
    source = tmp_path / "source"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."], source)

    (wheel,) = wheels.glob("tarmac-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(
            archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")
        )
    for required in REQUIRED_FILES:
        assert required in names, f"{required} missing from {wheel.name}"
    for module in (*REPO_ROOT.glob("bot/**/*.py"), *REPO_ROOT.glob("api/*.py")):
        assert module.relative_to(REPO_ROOT).as_posix() in names, module
    assert not any(n.startswith("tests/") or "node_modules" in n for n in names)
    assert "tarmac = bot.cli:main" in entry_points
    assert "serve = api.server:serve" in entry_points

    target = tmp_path / "site"
    _run(
        [*pip, "install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(wheel)],
        tmp_path,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    database = elsewhere / "tarmac.db"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(target),
        "PYTHONNOUSERSITE": "1",
        "TARMAC_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "TARMAC_CONFIG": str(elsewhere / "tarmac.yml"),
    }
    where = _run(
        [
            sys.executable,
            "-c",
            "import api, bot, bot.storage.db; print(bot.__file__); print(api.__file__)",
        ],
        elsewhere,
        env,
    )
    for line in where.splitlines():
        assert Path(line).is_relative_to(target), where

    migrated = _run([sys.executable, "-m", "bot", "migrate"], elsewhere, env)

    assert migrated.startswith("database at revision ")
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"projects", "environments", "releases", "release_candidates", "deployments"} <= tables
    assert {"api_tokens", "alembic_version"} <= tables
