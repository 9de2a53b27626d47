"""Schemathesis against the real `tarmac serve`: every operation of /api/openapi.json, with
data the document allows and data it does not, authenticated and not. No answer may be a 5xx,
and every answer must be one the document describes (status, content type, body, headers).

The server is a subprocess on a loopback port (aiohttp is neither ASGI nor WSGI), on each
backend, with the GitHub App configured against the fake GitHub. Before the run a token is made
with `tarmac token create` and a little history is created through the API, so that generated
requests naming `Backend`, its environments and its candidates reach the 2xx paths too.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.webhooks import WEBHOOK_PATH
from tests.conftest import (
    PROJECTS_YAML,
    SHA_A,
    SHA_B,
    WEBHOOK_SECRET,
)
from tests.fake_github import FakeGitHub
from tests.figures import record_figure
from tests.processes import app_env, start_server, stop_server
from tests.test_cli import created_token, free_port, run_tarmac

# Per operation and backend: (authenticated, unauthenticated). With both backends, each
# operation gets 2 * (AUTHENTICATED + UNAUTHENTICATED) examples. A deeper run by hand:
# TARMAC_TEST_FUZZ_EXAMPLES=1000 pytest tests/test_schemathesis.py
AUTHENTICATED_EXAMPLES = int(os.environ.get("TARMAC_TEST_FUZZ_EXAMPLES", "75"))
UNAUTHENTICATED_EXAMPLES = 25
REQUEST_TIMEOUT = 10
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
# Names that exist once the history below is made: requests with them reach the 2xx paths.
KNOWN_PATH_PARAMETERS: list[dict[str, str]] = [
    {"project": "Backend"},
    {"project": "Backend", "environment": "production"},
    {"project": "Backend", "environment": "staging"},
    {"project": "Backend", "version": "v1-rc1"},
    {"project": "Backend", "version": "v1-rc3"},
    {"project": "Backend", "environment": "production", "version": "v1-rc2"},
    {"project": "Backend", "environment": "staging", "deployment_id": "3"},
    # Waiting for two approvals, asked for by another token: approve reaches its 200.
    {"project": "Backend", "environment": "qa", "deployment_id": "4"},
]
# Bodies that name what exists, by operationId, for the same reason.
KNOWN_BODIES: dict[str, dict[str, Any]] = {
    "createRelease": {"repo": "acme/backend", "commit": SHA_A},
    "createDeployment": {"release_candidate_version": "v1-rc1"},
    "updateDeploymentStatus": {"release_candidate_version": "v1-rc2", "status": "in_progress"},
    "rejectDeployment": {"reason": "fuzz"},
    "markBad": {"reason": "fuzz"},
}
# Backend gains `qa`, whose deploys wait for two approvals.
FUZZ_PROJECTS_YAML = PROJECTS_YAML.replace(
    "        timeout_minutes: 30\n",
    "        timeout_minutes: 30\n      - name: qa\n        approvals:\n          required: 2\n",
)


# Queries that name what exists: v1-rc1 runs in production (its report against itself is empty).
KNOWN_QUERIES: dict[str, dict[str, str]] = {"getChanges": {"environment": "production"}}


@dataclass
class Tally:
    examples: int = 0
    server_errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    by_operation: dict[str, dict[int, int]] = field(default_factory=dict)

    def count(self, operation: str, status: int) -> None:
        self.examples += 1
        self.statuses[status] = self.statuses.get(status, 0) + 1
        seen = self.by_operation.setdefault(operation, {})
        seen[status] = seen.get(status, 0) + 1
        if status >= 500:
            self.server_errors += 1

    def operations_without_2xx(self) -> list[str]:
        return [
            operation
            for operation, seen in self.by_operation.items()
            if not any(200 <= status < 300 for status in seen)
        ]


class SignedWebhook(requests.auth.AuthBase):
    """Signs a request's body as GitHub would, so that fuzzed deliveries get past the
    signature check into the handlers."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        raw = body.encode("utf-8") if isinstance(body, str) else body
        digest = hmac.new(WEBHOOK_SECRET.encode(), raw, hashlib.sha256).hexdigest()
        request.headers["X-Hub-Signature-256"] = "sha256=" + digest
        return request


@dataclass
class LiveServer:
    base_url: str
    token: str


async def _make_history(base_url: str, token: str, other_token: str) -> None:
    """v1-rc1 running in production, v1-rc2 deployed after it and failed, v1-rc3 building;
    v1-rc1 deploying to staging (deployment 3); v1-rc1 waiting for approvals in qa
    (deployment 4, asked for by `other_token`)."""
    api = base_url + "/api/releases/Backend"
    calls: list[tuple[str, str, dict[str, Any], int]] = [
        (
            "POST",
            "/releases/v1-rc1",
            {"repo": "acme/backend", "commit": SHA_A, "trigger_build_workflow": False},
            201,
        ),
        (
            "POST",
            "/releases/v1-rc2",
            {"repo": "acme/backend", "commit": SHA_B, "trigger_build_workflow": False},
            201,
        ),
        ("POST", "/releases/v1-rc3", {"repo": "acme/backend", "commit": "c" * 40}, 201),
        (
            "POST",
            "/environments/production/deployments",
            {"release_candidate_version": "v1-rc1"},
            201,
        ),
        (
            "PATCH",
            "/environments/production/deployments",
            {"release_candidate_version": "v1-rc1", "status": "success"},
            200,
        ),
        (
            "PATCH",
            "/environments/production/deployments",
            {"release_candidate_version": "v1-rc2", "status": "failure"},
            200,
        ),
        (
            "POST",
            "/environments/staging/deployments",
            {"release_candidate_version": "v1-rc1"},
            201,
        ),
    ]
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        for method, path, body, expected in calls:
            async with http.request(method, api + path, json=body) as reply:
                assert reply.status == expected, (method, path, await reply.text())
        async with http.post(
            api + "/environments/qa/deployments",
            json={"release_candidate_version": "v1-rc1"},
            headers={"Authorization": f"Bearer {other_token}"},
        ) as reply:
            waiting = await reply.json()
            assert (reply.status, waiting["id"]) == (201, 4), waiting


@pytest.fixture
async def live_server(
    tmp_path: Path, database_url: str, fake_github: FakeGitHub, github_private_key: str
) -> AsyncIterator[LiveServer]:
    projects = tmp_path / "tarmac.yml"
    projects.write_text(FUZZ_PROJECTS_YAML)
    env = app_env(
        database_url=database_url,
        config=projects,
        fake_github=fake_github,
        private_key=github_private_key,
        log_level="WARNING",
    )
    created = await asyncio.to_thread(
        run_tarmac, "token", "create", "fuzz", "--actor", "fuzz@example.com", env=env, cwd=tmp_path
    )
    token = created_token(created)
    other = await asyncio.to_thread(
        run_tarmac, "token", "create", "history", "--actor", "history@example.com", env=env,
        cwd=tmp_path,
    )  # fmt: skip
    port = free_port()
    process = await start_server(env, tmp_path, port)
    base_url = f"http://127.0.0.1:{port}"
    try:
        await _make_history(base_url, token, created_token(other))
        yield LiveServer(base_url, token)
    finally:
        exit_code = await stop_server(process, grace_seconds=10)
        assert exit_code != -signal.SIGKILL, "tarmac serve did not stop on SIGTERM"


def _strategy(operation: Any) -> st.SearchStrategy[Any]:
    """Valid and invalid requests, with random path parameters and bodies and with known ones."""
    names = {p.name for p in operation.path_parameters}
    known_paths = [known for known in KNOWN_PATH_PARAMETERS if names and set(known) == names]
    strategies = []
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(generation_mode=mode))
        strategies.extend(
            operation.as_strategy(generation_mode=mode, path_parameters=known)
            for known in known_paths
        )
    query = KNOWN_QUERIES.get(operation.definition.raw.get("operationId", ""))
    if query is not None:
        strategies.extend(
            operation.as_strategy(path_parameters=known, query=query) for known in known_paths
        )
    body = KNOWN_BODIES.get(operation.definition.raw.get("operationId", ""))
    if body is not None:
        strategies.extend(
            operation.as_strategy(path_parameters=known, body=body) for known in known_paths
        )
    return st.one_of(strategies)


def _fuzz(operation: Any, max_examples: int, call: Callable[[Any], None]) -> None:
    @settings(
        max_examples=max_examples,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation))
    def run(case: Any) -> None:
        call(case)

    run()


def _served_document(server: LiveServer) -> dict[str, Any]:
    reply = requests.get(server.base_url + "/api/openapi.json", timeout=REQUEST_TIMEOUT)
    document: dict[str, Any] = reply.json()
    return document


def run_schemathesis(
    server: LiveServer, document: dict[str, Any], *, authenticated: bool, max_examples: int
) -> Tally:
    """Every operation of `document`, `max_examples` each; the tally of answers. A check that
    fails raises (after Hypothesis has shrunk the example)."""
    schema = schemathesis.openapi.from_dict(document)
    headers = {"Authorization": f"Bearer {server.token}"} if authenticated else {}
    tally = Tally()
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            signed = authenticated and operation.path == WEBHOOK_PATH
            sent = {"timeout": REQUEST_TIMEOUT, "auth": SignedWebhook() if signed else None}

            def call(case: Any, operation: Any = operation, sent: dict[str, Any] = sent) -> None:
                response = case.call(
                    base_url=server.base_url, session=session, headers=headers, **sent
                )
                tally.count(operation.label, response.status_code)
                case.validate_response(
                    response, checks=CHECKS, headers=headers, transport_kwargs=sent
                )

            _fuzz(operation, max_examples, call)
    return tally


def _without_404(document: dict[str, Any]) -> dict[str, Any]:
    """The document with one operation's 404 answer left out (and every other operation)."""
    path = "/api/releases/{project}/releases/{version}"
    operation = copy.deepcopy(document["paths"][path]["get"])
    del operation["responses"]["404"]
    return {
        **document,
        "paths": {path: {"parameters": document["paths"][path]["parameters"], "get": operation}},
    }


async def test_every_operation_answers_as_documented_and_never_5xx(
    live_server: LiveServer, backend: str
) -> None:
    document = await asyncio.to_thread(_served_document, live_server)
    started = time.monotonic()
    authenticated = await asyncio.to_thread(
        run_schemathesis,
        live_server,
        document,
        authenticated=True,
        max_examples=AUTHENTICATED_EXAMPLES,
    )
    unauthenticated = await asyncio.to_thread(
        run_schemathesis,
        live_server,
        document,
        authenticated=False,
        max_examples=UNAUTHENTICATED_EXAMPLES,
    )
    elapsed = time.monotonic() - started

    examples = authenticated.examples + unauthenticated.examples
    server_errors = authenticated.server_errors + unauthenticated.server_errors
    record_figure("schemathesis", "examples tried", examples)
    record_figure("schemathesis", "5xx seen", server_errors)
    record_figure("schemathesis", "seconds", round(elapsed, 1))
    assert server_errors == 0
    # Every operation reached a success path, not only refusals.
    assert authenticated.operations_without_2xx() == [], authenticated.by_operation
    assert {400, 401, 404} <= set(authenticated.statuses), authenticated.statuses
    assert {200, 401} <= set(unauthenticated.statuses), unauthenticated.statuses


async def test_the_run_fails_on_an_answer_the_document_does_not_describe(
    live_server: LiveServer,
) -> None:
    # The same run against a document that lacks the 404 the server gives for unknown names.
    document = _without_404(await asyncio.to_thread(_served_document, live_server))

    with pytest.raises(FailureGroup) as failed:
        await asyncio.to_thread(
            run_schemathesis, live_server, document, authenticated=True, max_examples=10
        )

    assert "Undocumented status code" in str(failed.value)
    assert "Received: 404" in str(failed.value)
