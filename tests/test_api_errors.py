"""What the API answers to requests it cannot serve: auth, malformed bodies, sizes, routes.

Every error is `{"error": "..."}` JSON, never a stack trace, and a refused request changes
nothing.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from api.app import create_app
from api.dashboard.setup import is_dashboard_resource
from bot.settings import Settings
from bot.storage import tokens
from bot.storage.db import Database
from bot.storage.models import Approval, Deployment, Environment, Release, ReleaseCandidate
from tests.conftest import SHA_A, SHA_B, Api, Reply, TestClock, make_token

UNAUTHORIZED = {"error": "Unauthorized"}
FORBIDDEN = {"error": "Forbidden"}
ONE_MIB = 1024 * 1024

# Every protected operation, with a body good enough to get past validation.
OPERATIONS: list[tuple[str, str, Any]] = [
    (
        "POST",
        "/api/releases/Backend/releases/v1.0.0-rc1",
        {"repo": "acme/backend", "commit": SHA_A},
    ),
    ("GET", "/api/releases/Backend/releases", None),
    ("GET", "/api/releases/Backend/releases/v1.0.0-rc1", None),
    ("GET", "/api/releases/Backend/releases/v1.0.0-rc1/changes", None),
    (
        "POST",
        "/api/releases/Backend/environments/staging/deployments",
        {"release_candidate_version": "v1.0.0-rc1"},
    ),
    (
        "PATCH",
        "/api/releases/Backend/environments/staging/deployments",
        {"release_candidate_version": "v1.0.0-rc1", "status": "success"},
    ),
    ("GET", "/api/releases/Backend/environments/staging/deployments", None),
    ("GET", "/api/releases/Backend/environments/staging/deployments/1", None),
    ("POST", "/api/releases/Backend/environments/staging/deployments/1/cancel", None),
    ("POST", "/api/releases/Backend/environments/staging/deployments/1/approve", None),
    (
        "POST",
        "/api/releases/Backend/environments/staging/deployments/1/reject",
        {"reason": "x"},
    ),
    ("POST", "/api/releases/Backend/releases/v1.0.0-rc1/reject", {"reason": "x"}),
    ("DELETE", "/api/releases/Backend/releases/v1.0.0-rc1/reject", None),
    ("GET", "/api/releases/Backend/audit", None),
    ("POST", "/api/releases/Backend/environments/staging/rollback", None),
    ("GET", "/api/releases/Backend/environments", None),
    ("PUT", "/api/releases/Backend/environments/staging/freeze", {"reason": "x"}),
    ("DELETE", "/api/releases/Backend/environments/staging/freeze", None),
]
OPERATION_IDS = [f"{method} {path}" for method, path, _ in OPERATIONS]


def project_routes() -> list[tuple[str, str]]:
    """Every (method, path) the app routes under a project, read from its router, placeholders
    filled in (a new placeholder fails here until it is given a value)."""
    app = create_app(Settings(database_url="sqlite+aiosqlite:///unused.db", config=Path("x.yml")))
    found = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if is_dashboard_resource(path):  # the dashboard's pages: tests/test_dashboard*.py
            continue
        if "{project}" in path and route.method != "HEAD":  # HEAD: aiohttp's, beside each GET
            values = {
                "project": "Backend",
                "environment": "staging",
                "version": "v1.0.0-rc1",
                "deployment_id": "1",
            }
            found.add((route.method, path.format(**values)))
    return sorted(found)


PROJECT_ROUTES = project_routes()


def assert_error(reply: Reply, status: int, body: dict[str, str]) -> None:
    assert reply.status == status
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.body == body
    assert "Traceback" not in json.dumps(reply.body)


async def snapshot(db: Database) -> dict[str, Any]:
    """Everything a refused request must leave as it was (token use times aside)."""
    async with db.read() as session:
        counts = {
            model.__tablename__: await session.scalar(select(func.count()).select_from(model))
            for model in (Release, ReleaseCandidate, Deployment, Approval)
        }
        deployments = (
            await session.execute(
                select(Deployment.id, Deployment.status, Deployment.error_message).order_by(
                    Deployment.id
                )
            )
        ).all()
        freezes = (
            await session.execute(
                select(Environment.name, Environment.frozen_at, Environment.frozen_reason).order_by(
                    Environment.id
                )
            )
        ).all()
        marked_bad = (
            await session.execute(
                select(ReleaseCandidate.version, ReleaseCandidate.rejected_reason).where(
                    ReleaseCandidate.rejected_at.is_not(None)
                )
            )
        ).all()
    return {
        "counts": counts,
        "deployments": deployments,
        "freezes": freezes,
        "marked_bad": marked_bad,
    }


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Token {token}",
        "{token}",
        "Bearer tarmac_not-a-real-token",
        "Bearer {token}x",
    ],
)
async def test_a_request_without_a_valid_token_is_unauthorized(
    api: Api, authorization: str | None
) -> None:
    headers = (
        {} if authorization is None else {"Authorization": authorization.format(token=api.token)}
    )

    reply = await api.get("/api/releases/Backend/releases", token="", headers=headers)

    assert_error(reply, 401, UNAUTHORIZED)


async def test_the_bearer_scheme_is_not_case_sensitive(api: Api) -> None:
    reply = await api.get(
        "/api/releases/Backend/releases", token="", headers={"Authorization": f"bearer {api.token}"}
    )

    assert reply.status == 200


@pytest.mark.parametrize(("method", "path", "body"), OPERATIONS, ids=OPERATION_IDS)
async def test_every_operation_needs_a_token(
    api: Api, db: Database, method: str, path: str, body: Any
) -> None:
    before = await snapshot(db)

    reply = await api.request(method, path, json_body=body, token="")

    assert_error(reply, 401, UNAUTHORIZED)
    assert await snapshot(db) == before


def test_the_operations_are_every_project_route() -> None:
    assert sorted((method, path) for method, path, _ in OPERATIONS) == PROJECT_ROUTES


@pytest.mark.parametrize(
    ("method", "path"), PROJECT_ROUTES, ids=[f"{m} {p}" for m, p in PROJECT_ROUTES]
)
async def test_a_token_scoped_to_another_project_is_forbidden(
    api: Api, db: Database, method: str, path: str
) -> None:
    frontend_only = await make_token(db, "frontend-ci", ["Frontend"], "fe@example.com")
    before = await snapshot(db)
    body = next((b for m, p, b in OPERATIONS if (m, p) == (method, path)), None)

    reply = await api.request(method, path, json_body=body, token=frontend_only)

    assert_error(reply, 403, FORBIDDEN)
    assert await snapshot(db) == before


async def test_a_scoped_token_works_on_its_project(api: Api, db: Database) -> None:
    frontend_only = await make_token(db, "frontend-ci", ["Frontend"], "fe@example.com")
    path = "/api/releases/Frontend/releases/frontend-1.0-rc1"

    created = await api.post(path, {"repo": "acme/monorepo", "commit": SHA_A}, token=frontend_only)
    deployed = await api.post(
        "/api/releases/Frontend/environments/production/deployments",
        {"release_candidate_version": "frontend-1.0-rc1"},
        token=frontend_only,
    )

    assert created.status == 201
    assert deployed.status == 201
    assert deployed.body["actor"] == "fe@example.com"


async def test_a_token_scoped_to_a_project_is_forbidden_even_where_nothing_exists(
    api: Api, db: Database
) -> None:
    frontend_only = await make_token(db, "frontend-ci", ["Frontend"])

    reply = await api.get("/api/releases/Nope/releases", token=frontend_only)

    assert_error(reply, 403, FORBIDDEN)


async def test_a_revoked_token_is_unauthorized(api: Api, db: Database) -> None:
    token = await make_token(db, "temporary")
    assert (await api.get("/api/releases/Backend/releases", token=token)).status == 200
    async with db.write() as session:
        assert await tokens.revoke_token(session, "temporary")

    reply = await api.get("/api/releases/Backend/releases", token=token)

    assert_error(reply, 401, UNAUTHORIZED)


# --- bodies ---------------------------------------------------------------------------------

RELEASE = "/api/releases/Backend/releases/v1.0.0-rc1"
DEPLOYMENTS = "/api/releases/Backend/environments/staging/deployments"
ROLLBACK = "/api/releases/Backend/environments/staging/rollback"
FREEZE = "/api/releases/Backend/environments/staging/freeze"
MARK_BAD = "/api/releases/Backend/releases/v1.0.0-rc1/reject"
REJECT = "/api/releases/Backend/environments/staging/deployments/2/reject"

BAD_BODIES: list[tuple[str, str, str, str]] = [
    ("POST", RELEASE, "{not json", "Invalid JSON body"),
    ("POST", RELEASE, "", "Invalid JSON body"),
    ("POST", RELEASE, "[]", "Request body must be a JSON object"),
    ("POST", RELEASE, '"acme/backend"', "Request body must be a JSON object"),
    ("POST", RELEASE, "null", "Request body must be a JSON object"),
    ("POST", RELEASE, '{"commit": "' + SHA_A + '"}', "Missing field 'repo'"),
    ("POST", RELEASE, '{"repo": "acme/backend"}', "Missing field 'commit'"),
    (
        "POST",
        RELEASE,
        '{"repo": "acme/backend", "commit": 123}',
        "Invalid field 'commit': Input should be a valid string",
    ),
    (
        "POST",
        RELEASE,
        '{"repo": ["acme/backend"], "commit": "' + SHA_A + '"}',
        "Invalid field 'repo': Input should be a valid string",
    ),
    (
        "POST",
        RELEASE,
        '{"repo": "acme/backend", "commit": "' + SHA_A + '", "trigger_build_workflow": "true"}',
        "Invalid field 'trigger_build_workflow': Input should be a valid boolean",
    ),
    (
        "POST",
        RELEASE,
        '{"repo": "acme/backend", "commit": "' + SHA_A + '", "trigger_build_workflow": 1}',
        "Invalid field 'trigger_build_workflow': Input should be a valid boolean",
    ),
    ("POST", DEPLOYMENTS, "{}", "Missing field 'release_candidate_version'"),
    (
        "POST",
        DEPLOYMENTS,
        '{"release_candidate_version": 1}',
        "Invalid field 'release_candidate_version': Input should be a valid string",
    ),
    ("PATCH", DEPLOYMENTS, '{"release_candidate_version": "v1.0.0-rc1"}', "Missing field 'status'"),
    ("PATCH", DEPLOYMENTS, '{"status": "success"}', "Missing field 'release_candidate_version'"),
    (
        "PATCH",
        DEPLOYMENTS,
        '{"release_candidate_version": "v1.0.0-rc1", "status": 3}',
        "Invalid field 'status': Input should be 'pending', 'in_progress', 'canceling', "
        "'success', 'failure', 'canceled', 'error' or 'unknown'",
    ),
    (
        "PATCH",
        DEPLOYMENTS,
        '{"release_candidate_version": "v1.0.0-rc1", "status": "failure", "error_message": 5}',
        "Invalid field 'error_message': Input should be a valid string",
    ),
    ("POST", ROLLBACK, "{oops", "Invalid JSON body"),
    (
        "POST",
        ROLLBACK,
        '{"force": "true"}',
        "Invalid field 'force': Input should be a valid boolean",
    ),
    ("POST", ROLLBACK, "null", "Request body must be a JSON object"),
    ("PUT", FREEZE, "{oops", "Invalid JSON body"),
    ("PUT", FREEZE, '{"reason": 7}', "Invalid field 'reason': Input should be a valid string"),
    (
        "POST",
        DEPLOYMENTS,
        '{"release_candidate_version": "v1.1.0-rc1", "force": "yes"}',
        "Invalid field 'force': Input should be a valid boolean",
    ),
    (
        "POST",
        DEPLOYMENTS,
        '{"release_candidate_version": "v1.1.0-rc1", "force": true, "reason": 1}',
        "Invalid field 'reason': Input should be a valid string",
    ),
    (
        "POST",
        ROLLBACK,
        '{"force": true, "reason": []}',
        "Invalid field 'reason': Input should be a valid string",
    ),
    ("POST", MARK_BAD, "{}", "Missing field 'reason'"),
    ("POST", MARK_BAD, "", "Invalid JSON body"),
    (
        "POST",
        MARK_BAD,
        '{"reason": " \\n "}',
        "Invalid field 'reason': Value error, must say why (not empty)",
    ),
    ("POST", REJECT, "null", "Request body must be a JSON object"),
    ("POST", REJECT, '{"reason": 5}', "Invalid field 'reason': Input should be a valid string"),
    (
        "POST",
        REJECT,
        '{"reason": ""}',
        "Invalid field 'reason': Value error, must say why (not empty)",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "data", "message"),
    BAD_BODIES,
    ids=[f"{m} {p.rsplit('/', 1)[-1]} {d[:40]!r}" for m, p, d, _ in BAD_BODIES],
)
async def test_a_malformed_body_is_refused_and_changes_nothing(
    api: Api, db: Database, method: str, path: str, data: str, message: str
) -> None:
    await api.ship("staging", "v1.0.0-rc1")
    await api.create_rc("v1.1.0-rc1", SHA_B)
    await api.deploy("staging", "v1.1.0-rc1")
    before = await snapshot(db)

    reply = await api.request(method, path, data=data, headers={"Content-Type": "application/json"})

    assert_error(reply, 400, {"error": message})
    assert await snapshot(db) == before


async def test_unknown_fields_are_ignored(api: Api) -> None:
    reply = await api.post(
        RELEASE, {"repo": "acme/backend", "commit": SHA_A, "comment": "from a newer client"}
    )

    assert reply.status == 201


BAD_REQUESTS: list[tuple[str, str, Any, int, str]] = [
    ("POST", RELEASE, {"repo": "acme/backend", "commit": "abc"}, 400, "Invalid commit hash"),
    ("POST", RELEASE, {"repo": "acme/other", "commit": SHA_A}, 404, "GitHub repository not found"),
    (
        "POST",
        RELEASE,
        {"repo": "acme/backend", "commit": SHA_B},
        409,
        "Release candidate already exists with a different commit",
    ),
    (
        "POST",
        "/api/releases/Backend/releases/v1.0.0",
        {"repo": "acme/backend", "commit": SHA_A},
        400,
        "Invalid release candidate version",
    ),
    (
        "POST",
        "/api/releases/Frontend/releases/f-1-rc1",
        {"repo": "acme/monorepo", "commit": SHA_A, "trigger_build_workflow": True},
        400,
        "Release project has no build workflow configured",
    ),
    ("POST", DEPLOYMENTS, {"release_candidate_version": "v9-rc1"}, 404, "Release not found"),
    (
        "PATCH",
        DEPLOYMENTS,
        {"release_candidate_version": "v9-rc1", "status": "success"},
        404,
        "Release not found",
    ),
    (
        "POST",
        "/api/releases/Backend/environments/production/deployments",
        {"release_candidate_version": "v1.0.0-rc1"},
        400,
        "Environment is frozen",
    ),
    (
        "POST",
        "/api/releases/Backend/environments/production/rollback",
        {},
        400,
        "Environment is frozen",
    ),
    ("POST", ROLLBACK.replace("staging", "qa"), {}, 404, "Release environment not found"),
    (
        "POST",
        "/api/releases/Backend/environments/production/deployments",
        {"release_candidate_version": "v1.0.0-rc1", "force": True},
        400,
        "A forced deploy needs a reason: say why in 'reason'",
    ),
    (
        "POST",
        "/api/releases/Backend/environments/production/deployments/3/approve",
        None,
        400,
        "Deployment is not waiting for approval",
    ),
    (
        "POST",
        "/api/releases/Backend/environments/production/deployments/3/reject",
        {"reason": "no"},
        400,
        "Deployment is not waiting for approval",
    ),
    (
        "POST",
        "/api/releases/Backend/releases/v9-rc1/reject",
        {"reason": "x"},
        404,
        "Release not found",
    ),
    (
        "DELETE",
        "/api/releases/Backend/releases/v9/reject",
        None,
        400,
        "Invalid release candidate version",
    ),
    (
        "GET",
        "/api/releases/Backend/audit?environment=qa",
        None,
        404,
        "Release environment not found",
    ),
    ("PUT", FREEZE, {"until": "2000-01-01T00:00:00Z"}, 400, "Freeze 'until' must be in the future"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    BAD_REQUESTS,
    ids=[f"{m} {message}" for m, _, _, _, message in BAD_REQUESTS],
)
async def test_a_refused_request_changes_nothing(
    api: Api,
    db: Database,
    clock: TestClock,
    method: str,
    path: str,
    body: Any,
    status: int,
    message: str,
) -> None:
    await api.ship("staging", "v1.0.0-rc1")
    await api.ship("production", "v1.0.0-rc1")
    await api.create_rc("v1.1.0-rc1", SHA_B)
    await api.deploy("production", "v1.1.0-rc1")
    until = (clock.now + timedelta(days=1)).isoformat()
    await api.put(
        "/api/releases/Backend/environments/production/freeze", {"reason": "x", "until": until}
    )
    before = await snapshot(db)

    reply = await api.request(method, path, json_body=body)

    assert_error(reply, status, {"error": message})
    assert await snapshot(db) == before


# --- sizes, routes, methods -----------------------------------------------------------------


def padded(body: dict[str, Any], size: int) -> str:
    """`body` as JSON, padded with trailing spaces to exactly `size` bytes."""
    text = json.dumps(body)
    return text + " " * (size - len(text))


async def test_a_body_of_exactly_1_mib_is_accepted(api: Api) -> None:
    data = padded({"repo": "acme/backend", "commit": SHA_A}, ONE_MIB)

    reply = await api.post(RELEASE, data=data, headers={"Content-Type": "application/json"})

    assert reply.status == 201


@pytest.mark.parametrize(("method", "path"), [("POST", RELEASE), ("PATCH", DEPLOYMENTS)])
async def test_a_body_over_1_mib_is_too_large(
    api: Api, db: Database, method: str, path: str
) -> None:
    await api.create_rc("v1.0.0-rc2")
    before = await snapshot(db)
    data = padded({"repo": "acme/backend", "commit": SHA_A}, ONE_MIB + 1)

    reply = await api.request(method, path, data=data, headers={"Content-Type": "application/json"})

    assert_error(reply, 413, {"error": "Request body is larger than 1 MiB"})
    assert await snapshot(db) == before


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/api",
        "/api/releases",
        "/api/releases/Backend",
        "/api/releases/Backend/unknown",
        "/api/releases/Backend/releases/v1.0.0-rc1/extra",
        "/api/releases/Backend/environments/staging",
    ],
)
async def test_an_unknown_path_is_not_found_as_json(api: Api, path: str) -> None:
    reply = await api.get(path, check=False)

    assert_error(reply, 404, {"error": "Not found"})


async def test_an_unknown_path_is_not_found_without_a_token(api: Api) -> None:
    reply = await api.get("/api/releases/Backend/unknown", token="", check=False)

    assert_error(reply, 404, {"error": "Not found"})


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/api/releases/Backend/releases", {"GET", "HEAD"}),
        ("PUT", RELEASE, {"GET", "HEAD", "POST"}),
        ("DELETE", DEPLOYMENTS, {"GET", "HEAD", "POST", "PATCH"}),
        ("GET", ROLLBACK, {"POST"}),
        ("POST", FREEZE, {"PUT", "DELETE"}),
        ("POST", "/healthz", {"GET", "HEAD"}),
        ("POST", "/api/openapi.json", {"GET", "HEAD"}),
    ],
)
async def test_a_wrong_method_is_not_allowed_as_json(
    api: Api, method: str, path: str, allowed: set[str]
) -> None:
    reply = await api.request(method, path, check=False)

    assert_error(reply, 405, {"error": "Method not allowed"})
    assert {m.strip() for m in reply.headers["Allow"].split(",")} == allowed


async def test_health_needs_no_token(api: Api) -> None:
    reply = await api.get("/healthz", token="")

    assert reply.status == 200
    assert reply.body == {"status": "ok"}
