"""Secrets never reach a log line or an answer, checked over the whole test run.

A pytest plugin (registered from conftest.py). At the start of the session every log record of
the test process, at DEBUG, goes to `leak-check/records.log` under the session's basetemp,
formatted with its traceback as Tarmac formats it; the `api` and `webhook` helpers append every
response body to `leak-check/responses.log`. The helpers that make secrets register them here:
the webhook secret, the test App's private key (its base64 lines), every API token (`make_token`
and `tarmac token create`), and the JWTs and installation tokens the fake GitHub sees. At the
end of the session every `*.log` under basetemp (those two, and the `serve-*.log` files the
subprocess tests write) is searched for every registered secret; one found fails the run.

PYTEST_DONT_REWRITE: conftest.py imports this module before pytest loads it as a plugin, and it
has no asserts to rewrite.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.core.log_context import ContextFilter, text_formatter
from tests.session_checks import record_check

# Shorter strings would match by chance; every secret the suite makes is longer.
MIN_SECRET_LENGTH = 16
LEAK_DIRECTORY = "leak-check"

_secrets: set[str] = set()
_responses: list[bytes] = []
_state: dict[str, Any] = {}


def register_secret(value: str) -> str:
    """Remember `value` as a secret that must appear in no log and no answer; returns it."""
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"a secret of {len(value)} characters would match by chance")
    _secrets.add(value)
    return value


def register_private_key(pem: str) -> None:
    """The base64 lines of a PEM key (any one of them in a log is a leak)."""
    for line in pem.splitlines():
        if len(line) >= MIN_SECRET_LENGTH and not line.startswith("-----"):
            register_secret(line)


def record_response(body: bytes) -> None:
    """A response body the helpers received; written out at the end of each test."""
    _responses.append(body)


@web.middleware
async def remember_credentials(request: web.Request, handler: Any) -> web.StreamResponse:
    """For the fake GitHub: every JWT and installation token presented to it is a secret."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() in ("bearer", "token") and len(value) >= MIN_SECRET_LENGTH:
        register_secret(value)
    response: web.StreamResponse = await handler(request)
    return response


# --- the search -----------------------------------------------------------------------------

# Every secret's first characters are drawn from base64, base64url and JWT alphabets; a log is
# split into runs of those characters and only windows of those runs are looked up, so the cost
# grows with the text, not with text x secrets.
_WINDOW = MIN_SECRET_LENGTH
_RUN = re.compile(rf"[A-Za-z0-9_\-+/=.]{{{_WINDOW},}}")


@dataclass(frozen=True)
class Leak:
    path: Path
    line: int
    secret_hint: str  # the first characters only: the report must not leak it again

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: a secret ({self.secret_hint}…)"


class SecretIndex:
    def __init__(self, secrets: Collection[str]) -> None:
        self.size = len(secrets)
        self._by_window: dict[str, list[str]] = {}
        self._unindexable: list[str] = []
        for secret in secrets:
            window = secret[:_WINDOW]
            if _RUN.fullmatch(window):
                self._by_window.setdefault(window, []).append(secret)
            else:
                self._unindexable.append(secret)

    def found_in(self, text: str) -> set[str]:
        found = {secret for secret in self._unindexable if secret in text}
        for run in set(_RUN.findall(text)):
            for start in range(len(run) - _WINDOW + 1):
                candidates = self._by_window.get(run[start : start + _WINDOW])
                if candidates:
                    found.update(secret for secret in candidates if secret in text)
        return found


def find_leaks(paths: Iterable[Path], secrets: Collection[str]) -> list[Leak]:
    """Where any of `secrets` appears in the files at `paths`, by file and line."""
    index = SecretIndex(secrets)
    leaks = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        for secret in sorted(index.found_in(text)):
            leaks.extend(
                Leak(path, number, secret[:6])
                for number, line in enumerate(text.splitlines(), 1)
                if secret in line
            )
    return leaks


# --- the plugin -----------------------------------------------------------------------------


class _CountingFileHandler(logging.FileHandler):
    records = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        super().emit(record)


@pytest.fixture(scope="session", autouse=True)
def _every_log_record_to_a_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    directory = tmp_path_factory.getbasetemp() / LEAK_DIRECTORY
    directory.mkdir(exist_ok=True)
    handler = _CountingFileHandler(directory / "records.log", encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.addFilter(ContextFilter())
    handler.setFormatter(text_formatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    # aiosqlite logs each call on its thread at DEBUG: function names, never values; they
    # would be most of the file.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)
    # markdown-it-py logs every block rule it tries at DEBUG: no values, and most of the file.
    logging.getLogger("markdown_it").setLevel(logging.INFO)
    _state.update(handler=handler, directory=directory)
    yield
    root.removeHandler(handler)
    root.setLevel(level)
    handler.close()


@pytest.fixture(autouse=True)
def _responses_to_the_file() -> Iterator[None]:
    yield
    directory: Path | None = _state.get("directory")
    if directory is not None and _responses:
        with (directory / "responses.log").open("ab") as sink:
            for body in _responses:
                sink.write(body + b"\n")
    _responses.clear()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """This process's logs searched for this process's secrets (each xdist worker its own)."""
    directory: Path | None = _state.get("directory")
    if directory is None:  # nothing ran here (collection only, an early failure, xdist's main)
        return
    handler: _CountingFileHandler = _state["handler"]
    handler.flush()
    started = time.monotonic()
    files = sorted(directory.parent.rglob("*.log"))
    leaks = find_leaks(files, _secrets)
    seconds = time.monotonic() - started
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    summary = (
        f"leak check{f' ({worker})' if worker else ''}: {handler.records} log records, "
        f"{len(files)} files ({sum(p.stat().st_size for p in files) // 1024} KiB), "
        f"{len(_secrets)} secrets: {len(leaks)} leaks ({seconds:.1f} s)"
    )
    lines = [summary, *(str(leak) for leak in leaks)]
    if leaks:
        lines.append("secrets found in logs or answers")
    record_check(session.config, "leak check", lines, bool(leaks))
