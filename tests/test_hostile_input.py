"""Strange names in every path parameter and NUL in free text: a 4xx, never a 5xx, nothing
written. (PostgreSQL refuses NUL in text, so such input must be stopped before the database.)"""

from __future__ import annotations

import pytest

from tests.conftest import Api

HOSTILE_NAMES = [
    "Back%00end",
    "..",
    "..%2F..%2Fetc",
    "%2F",
    "Backend'%20OR%20'1'%3D'1",
    "x" * 5000,
    "%E2%80%AE",
    "%FF%FE",
]

ROUTES = [
    ("POST", "/api/releases/{name}/releases/v1-rc1", {"repo": "acme/backend", "commit": "a" * 40}),
    ("GET", "/api/releases/{name}/releases", None),
    ("GET", "/api/releases/{name}/releases/v1-rc1", None),
    ("GET", "/api/releases/{name}/environments", None),
    (
        "POST",
        "/api/releases/Backend/environments/{name}/deployments",
        {"release_candidate_version": "v1-rc1"},
    ),
    (
        "PATCH",
        "/api/releases/Backend/environments/{name}/deployments",
        {"release_candidate_version": "v1-rc1", "status": "success"},
    ),
    ("GET", "/api/releases/Backend/environments/{name}/deployments", None),
    ("POST", "/api/releases/Backend/environments/{name}/rollback", None),
    ("PUT", "/api/releases/Backend/environments/{name}/freeze", None),
    ("DELETE", "/api/releases/Backend/environments/{name}/freeze", None),
    ("GET", "/api/releases/Backend/releases/{name}", None),
    ("POST", "/api/releases/Backend/releases/{name}", {"repo": "acme/backend", "commit": "a" * 40}),
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_hostile_path_parameters_get_a_client_error_and_change_nothing(
    api: Api, name: str
) -> None:
    await api.ship("production", "v1-rc1")
    before = await api.deployments("production")

    for method, template, body in ROUTES:
        reply = await api.request(method, template.format(name=name), json_body=body, check=False)
        assert 400 <= reply.status < 500, (method, template, reply.status, reply.body)
        assert set(reply.body) == {"error"}

    after = await api.deployments("production")
    assert after.body == before.body
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

    assert (report.status, report.body) == (
        400,
        {"error": "Invalid field 'error_message': Value error, must not contain NUL characters"},
    )
    assert (freeze.status, freeze.body) == (
        400,
        {"error": "Invalid field 'reason': Value error, must not contain NUL characters"},
    )
    environments = await api.get("/api/releases/Backend/environments")
    production = next(e for e in environments.body if e["name"] == "production")
    assert (production["frozen"], production["active_deployment"]) == (False, None)
    assert (await api.deployments("production")).body[0]["status"] == "success"
