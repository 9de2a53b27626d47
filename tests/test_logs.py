"""Structured logs: each line names what it is about (delivery, project, environment,
deployment, release candidate), in text or JSON (`TARMAC_LOG_FORMAT`); and the leak check of
tests/leak_check.py finds a secret planted in a log."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app.operations import Mirror
from bot.app.timeouts import sweep_stuck_deployments
from bot.core.log_context import (
    ContextFilter,
    add_log_context,
    current_log_context,
    json_formatter,
    log_context,
    text_formatter,
)
from bot.github.outbound.worker import OutboxWorker
from bot.storage.db import Database
from tests.conftest import PROJECTS_YAML, SHA_A, Api, TestClock, Webhooks, github_payload
from tests.fake_github import FakeGitHub
from tests.leak_check import find_leaks, register_secret
from tests.session_checks import run_planted_test
from tests.test_cli import created_token, http, run_tarmac, sqlite_url, tarmac_env, tarmac_server
from tests.test_github_tags import tag_push

DEPLOYMENTS = "/api/releases/Backend/environments/staging/deployments"
REPO_ROOT = Path(__file__).resolve().parent.parent


class CapturedLog:
    """Every record the process logs, formatted as `tarmac serve` would (JSON or text)."""

    def __init__(self, formatter: logging.Formatter) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.addFilter(ContextFilter())
        self.handler.setFormatter(formatter)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def objects(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]

    def about(self, text: str) -> list[dict[str, Any]]:
        """The JSON lines whose message holds `text`."""
        return [line for line in self.objects() if text in line["message"]]


@pytest.fixture
def json_log() -> Iterator[CapturedLog]:
    """The JSON format on the root logger at INFO. Requested before the app is made, so that
    aiohttp (which decides at start whether to write its access log) writes it."""
    yield from _captured(json_formatter())


@pytest.fixture
def text_log() -> Iterator[CapturedLog]:
    yield from _captured(text_formatter())


def _captured(formatter: logging.Formatter) -> Iterator[CapturedLog]:
    captured = CapturedLog(formatter)
    root = logging.getLogger()
    level = root.level
    root.addHandler(captured.handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    yield captured
    root.removeHandler(captured.handler)
    root.setLevel(level)


def fields(line: dict[str, Any]) -> dict[str, Any]:
    """A JSON line's context fields."""
    names = ("delivery_id", "project", "environment", "deployment_id", "release_candidate")
    return {name: line[name] for name in names if name in line}


# --- the context ----------------------------------------------------------------------------


def test_the_context_nests_and_ends_with_its_block() -> None:
    with log_context(project="Backend"):
        with log_context(environment="staging", deployment_id=None):
            add_log_context(deployment_id=7)
            assert current_log_context() == {
                "project": "Backend",
                "environment": "staging",
                "deployment_id": 7,
            }
        assert current_log_context() == {"project": "Backend"}
    assert current_log_context() == {}


def test_a_json_line_has_the_fields_and_the_traceback(json_log: CapturedLog) -> None:
    log = logging.getLogger("tarmac.test")
    with log_context(delivery_id="d-1", project="Backend", release_candidate="v1-rc1"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("it failed: %s", "really")
    log.warning("outside")

    inside, outside = json_log.objects()
    assert inside["level"] == "ERROR"
    assert inside["logger"] == "tarmac.test"
    assert inside["message"] == "it failed: really"
    assert inside["time"].endswith("Z")
    assert fields(inside) == {
        "delivery_id": "d-1",
        "project": "Backend",
        "release_candidate": "v1-rc1",
    }
    assert inside["exc_info"].startswith("Traceback (most recent call last):")
    assert inside["exc_info"].endswith("RuntimeError: boom")
    assert fields(outside) == {}
    assert "exc_info" not in outside


def test_a_text_line_appends_the_fields_and_keeps_the_traceback_below(
    text_log: CapturedLog,
) -> None:
    log = logging.getLogger("tarmac.test")
    with log_context(project="Backend", environment="my env"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("it failed")

    first, *traceback = text_log.lines()
    assert first.endswith(' ERROR tarmac.test: it failed project=Backend environment="my env"')
    assert traceback[0] == "Traceback (most recent call last):"
    assert traceback[-1] == "RuntimeError: boom"


# --- where the context is set ---------------------------------------------------------------


async def test_rest_lines_name_the_project_environment_and_release(
    json_log: CapturedLog, api: Api
) -> None:
    await api.create_rc("v1.0.0-rc1")
    deployed_reply = await api.deploy("staging", "v1.0.0-rc1")
    await api.get("/healthz")

    [created] = json_log.about("POST /api/releases/Backend/releases/v1.0.0-rc1 ")
    [deployed] = json_log.about(f"POST {DEPLOYMENTS} ")
    [health] = json_log.about("GET /healthz ")
    assert created["logger"] == "aiohttp.access"
    assert fields(created) == {"project": "Backend", "release_candidate": "v1.0.0-rc1"}
    # The new deployment's id, once recorded, names the rest of the request's lines.
    assert fields(deployed) == {
        "project": "Backend",
        "environment": "staging",
        "deployment_id": deployed_reply.body["id"],
    }
    assert fields(health) == {}


async def test_webhook_lines_name_the_delivery_and_what_it_concerns(
    json_log: CapturedLog, webhook: Webhooks
) -> None:
    ping_id, tag_id = str(uuid.uuid4()), str(uuid.uuid4())
    await webhook("ping", github_payload("ping", "with-app_id"), ping_id)
    await webhook("push", tag_push("v1.0.0-rc1", SHA_A), tag_id)

    ping_lines = [line for line in json_log.objects() if line.get("delivery_id") == ping_id]
    [handled] = json_log.about(f"delivery {tag_id} (push):")
    # The router's line, and the inbox reader's one line of what became of it.
    assert {line["logger"] for line in ping_lines} >= {"bot.github.inbound.inbox"}
    assert [line["message"] for line in ping_lines if line["logger"].endswith("inbox")] == [
        f"delivery {ping_id} (ping): pong"
    ]
    assert fields(handled) == {
        "delivery_id": tag_id,
        "project": "Backend",
        "release_candidate": "v1.0.0-rc1",
    }


async def test_outbox_lines_name_the_deployment(
    json_log: CapturedLog, github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1.0.0-rc1")
    await github_api.deploy("production", "v1.0.0-rc1")
    [deployment] = (await github_api.deployments("production")).body
    fake_github.fail(r"/deployments$", status=502)

    await outbox.deliver_due()

    [retried] = [
        line for line in json_log.objects() if line["logger"] == "bot.github.outbound.worker"
    ]
    assert retried["level"] == "WARNING"
    assert fields(retried)["deployment_id"] == deployment["id"]


async def test_a_timed_out_deployment_is_logged_with_its_names(
    json_log: CapturedLog, api: Api, db: Database, clock: TestClock
) -> None:
    await api.create_rc("v1.0.0-rc1")
    await api.deploy("production", "v1.0.0-rc1")
    [deployment] = (await api.deployments("production")).body
    clock.advance(minutes=31)

    assert await sweep_stuck_deployments(db, clock, Mirror(enabled=False)) == 1

    [timed_out] = json_log.about("timed out after 30 minutes")
    assert fields(timed_out) == {
        "project": "Backend",
        "environment": "production",
        "deployment_id": deployment["id"],
        "release_candidate": "v1.0.0-rc1",
    }


# --- the real server ------------------------------------------------------------------------


def test_tarmac_serve_with_json_logs_writes_only_json_lines(tmp_path: Path) -> None:
    config = tmp_path / "tarmac.yml"
    config.write_text(PROJECTS_YAML)
    env = tarmac_env(
        database_url=sqlite_url(tmp_path / "tarmac.db"), config=config, log_format="JSON"
    )
    token = created_token(run_tarmac("token", "create", "ci", env=env, cwd=tmp_path))
    with tarmac_server(env, tmp_path) as server:
        created = http(
            "POST",
            server.base_url + "/api/releases/Backend/releases/v1.0.0-rc1",
            token=token,
            body={"repo": "acme/backend", "commit": SHA_A},
        )
        refused = http("GET", server.base_url + "/api/releases/Backend/releases", token="nope")
        os.kill(server.process.pid, signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0
        output = server.output()

    assert (created.status, refused.status) == (201, 401)
    lines = [json.loads(line) for line in output.splitlines()]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    assert any(line["message"].startswith("serving on http://127.0.0.1:") for line in lines)
    [access] = [line for line in lines if "POST /api/releases/Backend/releases/" in line["message"]]
    assert fields(access) == {"project": "Backend", "release_candidate": "v1.0.0-rc1"}
    assert token not in output


def test_an_unknown_log_format_is_a_clear_error(tmp_path: Path) -> None:
    result = run_tarmac("check-config", env=tarmac_env(log_format="xml"), cwd=tmp_path)

    assert result.returncode == 2
    assert result.stderr == "error: TARMAC_LOG_FORMAT: Input should be 'text' or 'json'\n"


# --- the leak check -------------------------------------------------------------------------


def test_the_leak_check_finds_a_planted_secret(tmp_path: Path) -> None:
    secret = "tarmac_" + uuid.uuid4().hex + "ZZ"
    clean = tmp_path / "clean.log"
    clean.write_text("INFO access: GET /healthz 200\nline with tarmac_ but no secret\n")
    planted = tmp_path / "planted.log"
    planted.write_text(f"INFO one\nDEBUG sending Authorization: Bearer {secret}!\nINFO three\n")
    unaligned = tmp_path / "unaligned.log"
    unaligned.write_text(f"x{secret}y\n")

    leaks = find_leaks([clean, planted, unaligned], [secret, "another-secret-never-logged"])

    assert [(leak.path, leak.line) for leak in leaks] == [(planted, 2), (unaligned, 1)]
    assert all(secret not in str(leak) for leak in leaks)


PLANTED_TEST = """
import logging

from tests.leak_check import register_secret


def test_that_logs_a_secret() -> None:
    secret = register_secret("planted-" + "secret-0123456789abcdef")
    logging.getLogger("bot.anything").debug("signing with %s", secret)
"""


def test_a_run_whose_test_logs_a_secret_fails(tmp_path: Path) -> None:
    result = run_planted_test(tmp_path, PLANTED_TEST, "tests.leak_check")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    assert "1 secrets: 1 leaks" in result.stdout
    assert "records.log:1: a secret (plante…)" in result.stdout
    assert "planted-secret-0123456789abcdef" not in result.stdout + result.stderr


def test_a_secret_short_enough_to_match_by_chance_is_refused() -> None:
    with pytest.raises(ValueError, match="match by chance"):
        register_secret("short")
