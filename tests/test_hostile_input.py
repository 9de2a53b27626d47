"""Strange names in every path parameter and NUL in free text: a 4xx, never a 5xx, nothing
written. (PostgreSQL refuses NUL in text, so such input must be stopped before the database.)

The operations come from the OpenAPI document, which tests/test_openapi.py holds equal to the
app's routes, so a new route or path parameter is covered here without being listed.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import SHA_A, Api

HOSTILE_NAMES = [
    "Back%00end",
    "..",
    "..%2F..%2Fetc",
    "%2F",
    "%2e%2e",
    "Backend%2F..%2FFrontend",
    "Backend'%20OR%20'1'%3D'1",
    "Backend%22%3B%20DROP%20TABLE%20projects%3B--",
    # LIKE wildcards and case: a lookup must be by exact name.
    "Back%25",
    "Backen_",
    "BACKEND",
    "x" * 5000,
    "%E2%80%AE",
    "%FF%FE",
]
# Over aiohttp's 8190-byte request line: refused by the HTTP parser, before any handler.
OVERLONG_NAME = "x" * 10_000

# The valid value of each path parameter, and a valid body of each operation that takes one.
VALID = {
    "project": "Backend",
    "environment": "production",
    "version": "v1-rc1",
    "deployment_id": "1",
}
BODIES: dict[str, Any] = {
    "createRelease": {"repo": "acme/backend", "commit": SHA_A},
    "createDeployment": {"release_candidate_version": "v1-rc1"},
    "updateDeploymentStatus": {"release_candidate_version": "v1-rc1", "status": "success"},
    "rejectDeployment": {"reason": "hostile"},
    "markBad": {"reason": "hostile"},
}
# Names that climb a level: appended to a route without parameters they lead to its parent.
DOT_SEGMENTS = {"..", "%2e%2e"}
# The routes without path parameters, with a hostile name appended: no route, a 404.
FIXED_PATHS = ["/api/github/webhooks", "/metrics", "/readyz", "/healthz", "/api/openapi.json"]


def hostile_requests(document: dict[str, Any], name: str) -> list[tuple[str, str, Any]]:
    """(method, path, body) for every operation and every one of its path parameters, that
    parameter set to `name` and the others valid."""
    requests = []
    for template, item in document["paths"].items():
        parameters = re.findall(r"\{(\w+)\}", template)
        for method, operation in item.items():
            if method == "parameters":
                continue
            for hostile in parameters:
                values = {p: name if p == hostile else VALID[p] for p in parameters}
                body = BODIES.get(operation["operationId"])
                requests.append((method.upper(), template.format(**values), body))
    return requests


def test_every_path_parameter_of_every_operation_is_covered(
    openapi_document: dict[str, Any],
) -> None:
    requests = hostile_requests(openapi_document, "HOSTILE")
    covered = {(m, re.sub(r"[^/]*HOSTILE[^/]*", "*", p)) for m, p, _ in requests}

    # Each environment route with the project, then the environment, hostile; and so on.
    assert ("POST", "/api/releases/*/environments/production/rollback") in covered
    assert ("POST", "/api/releases/Backend/environments/*/rollback") in covered
    assert ("GET", "/api/releases/Backend/releases/*") in covered
    parameters = sum(
        len(re.findall(r"\{\w+\}", template)) * len(set(item) - {"parameters"})
        for template, item in openapi_document["paths"].items()
    )
    assert len(requests) == parameters == 37


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_hostile_path_parameters_get_a_client_error_and_change_nothing(
    api: Api, openapi_document: dict[str, Any], name: str
) -> None:
    await api.ship("production", "v1-rc1")
    before = await api.deployments("production")
    environments_before = await api.get("/api/releases/Backend/environments")

    for method, path, body in hostile_requests(openapi_document, name):
        reply = await api.request(method, path, json_body=body, check=False)
        assert 400 <= reply.status < 500, (method, path[:200], reply.status, reply.body)
        assert set(reply.body) == {"error"}
    for path in FIXED_PATHS:
        if name in DOT_SEGMENTS:
            continue  # `/metrics/..` is `/`: the dashboard's overview, a page for people
        reply = await api.get(f"{path}/{name}", check=False)
        assert (reply.status, set(reply.body)) == (404, {"error"}), (path, reply.body)

    after = await api.deployments("production")
    assert after.body == before.body
    assert (await api.get("/api/releases/Backend/environments")).body == environments_before.body
    releases = await api.get("/api/releases/Backend/releases")
    assert [r["version"] for r in releases.body] == ["v1"]
    assert [c["version"] for c in releases.body[0]["release_candidates"]] == ["v1-rc1"]


async def test_a_name_too_long_for_a_request_line_is_refused_by_the_server(
    api: Api, openapi_document: dict[str, Any]
) -> None:
    await api.ship("production", "v1-rc1")

    for method, path, body in hostile_requests(openapi_document, OVERLONG_NAME):
        reply = await api.request(method, path, json_body=body, check=False)
        assert 400 <= reply.status < 500, (method, path[:200], reply.status)

    releases = await api.get("/api/releases/Backend/releases")
    assert [r["version"] for r in releases.body] == ["v1"]


async def test_nul_in_free_text_is_refused_before_the_database(api: Api) -> None:
    await api.ship("production", "v1-rc1")

    report = await api.patch(
        "/api/releases/Backend/environments/production/deployments",
        {"release_candidate_version": "v1-rc1", "status": "failure", "error_message": "a\x00b"},
    )
    freeze = await api.put(
        "/api/releases/Backend/environments/production/freeze", {"reason": "a\x00b"}
    )
    forced = await api.post(
        "/api/releases/Backend/environments/production/deployments",
        {"release_candidate_version": "v1-rc1", "force": True, "reason": "a\x00b"},
    )
    marked = await api.post("/api/releases/Backend/releases/v1-rc1/reject", {"reason": "a\x00b"})

    assert (report.status, report.body) == (
        400,
        {"error": "Invalid field 'error_message': Value error, must not contain NUL characters"},
    )
    for refused in (freeze, forced, marked):
        assert (refused.status, refused.body) == (
            400,
            {"error": "Invalid field 'reason': Value error, must not contain NUL characters"},
        )
    environments = await api.get("/api/releases/Backend/environments")
    production = next(e for e in environments.body if e["name"] == "production")
    assert (production["frozen"], production["active_deployment"]) == (False, None)
    assert (await api.deployments("production")).body[0]["status"] == "success"
    candidate = await api.get("/api/releases/Backend/releases/v1-rc1")
    assert candidate.body["rejected"] is None


async def test_a_body_nested_too_deep_to_decode_is_a_400(api: Api) -> None:
    depth = 100_000
    body = '{"release_candidate_version": ' + "[" * depth + "]" * depth + "}"

    reply = await api.post(
        "/api/releases/Backend/environments/production/deployments",
        data=body,
        headers={"Content-Type": "application/json"},
    )

    assert reply.status == 400
    assert set(reply.body) == {"error"}
