"""Checks over a whole test run (no secret in any log, nothing read outside the checkout) that
report once at its end and fail it: a pytest plugin (registered from conftest.py).

Under pytest-xdist each worker runs its share of the tests and checks what it saw; its findings
travel to the main process with the worker's `workeroutput`, and the main process prints every
worker's lines and fails the run if any check failed (a worker's own exit status is not the
run's).

PYTEST_DONT_REWRITE: conftest.py imports this module before pytest loads it as a plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]

PREFIX = "tarmac-check:"

_collected: dict[str, list[tuple[list[str], bool]]] = {}


def record_check(config: pytest.Config, name: str, lines: list[str], failed: bool) -> None:
    """What check `name` found in this process; call it from `pytest_sessionfinish`."""
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[PREFIX + name] = json.dumps([lines, failed])
        return
    _collected.setdefault(name, []).append((lines, failed))


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    for key, value in getattr(node, "workeroutput", {}).items():
        if key.startswith(PREFIX):
            lines, failed = json.loads(value)
            _collected.setdefault(key.removeprefix(PREFIX), []).append((lines, failed))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workeroutput"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    failed_any = False
    for name, results in _collected.items():
        failed = any(failed for _, failed in results)
        failed_any = failed_any or failed
        lines = [line for found, _ in results for line in found]
        if failed:
            lines.append(f"{name}: failing the run")
        if reporter is not None:
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line, red=failed)
        else:
            print("\n".join(lines))
    _collected.clear()
    if failed_any:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def run_planted_test(tmp_path: Path, source: str, plugin: str) -> subprocess.CompletedProcess[str]:
    """A pytest run of one test file made of `source`, with the checks and `plugin`: how the
    tests of a check show that a run it should fail does fail."""
    (tmp_path / "test_planted.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "tests.session_checks", "-p", plugin]
    command += ["-p", "no:cacheprovider", "--basetemp", str(tmp_path / "inner"), "test_planted.py"]
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
