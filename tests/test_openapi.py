"""The OpenAPI document: served without a token, valid OpenAPI 3.1, in step with the routes the
app really has, and describing every reply the API really sends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from api.app import create_app
from api.auth import GRAPHQL_PATH
from api.dashboard.setup import is_dashboard_resource
from bot.settings import Settings
from bot.storage.db import Database
from tests.conftest import PROJECTS_YAML, SHA_A, SHA_B, SHA_C, Api, make_token
from tests.openapi_conformance import OpenApiConformance

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
# Backend gains `qa`, where a deploy waits for two approvals: the tour approves and rejects.
TOUR_PROJECTS_YAML = PROJECTS_YAML.replace(
    "        timeout_minutes: 30\n",
    "        timeout_minutes: 30\n      - name: qa\n        approvals:\n          required: 2\n",
)


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(TOUR_PROJECTS_YAML)
    return path


def documented_operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    }


@pytest.fixture(scope="module", autouse=True)
def checked_before_module(conformance: OpenApiConformance) -> int:
    """How many replies the conformance checker had validated when this module started."""
    return conformance.checked


async def test_the_document_is_served_without_a_token(
    api: Api, openapi_document: dict[str, Any]
) -> None:
    reply = await api.get("/api/openapi.json", token="")

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.body == json.loads(json.dumps(openapi_document))


async def test_the_served_document_is_valid_openapi_3_1(api: Api) -> None:
    reply = await api.get("/api/openapi.json", token="")

    assert reply.body["openapi"].startswith("3.1.")
    validate(reply.body, cls=OpenAPIV31SpecValidator)


def test_every_route_of_the_app_is_documented_and_nothing_else(
    tmp_path: Path, projects_file: Path, openapi_document: dict[str, Any]
) -> None:
    # Building the app registers its routes; nothing is opened until it starts.
    app = create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}", config=projects_file)
    )
    routed = {
        (resource.canonical, route.method)
        for resource in app.router.resources()
        for route in resource
        if route.method != "HEAD"  # aiohttp's automatic companion of every GET
        # The dashboard's pages are for people (tests/test_dashboard.py), not the API.
        and not is_dashboard_resource(resource.canonical)
    }
    # GraphQL is described by its own schema, docs/graphql.graphql (tests/test_graphql.py).
    graphql = {(GRAPHQL_PATH, "GET"), (GRAPHQL_PATH, "POST")}

    assert graphql <= routed
    assert routed - graphql == documented_operations(openapi_document)


def test_every_operation_has_an_id_and_says_who_may_call_it(
    openapi_document: dict[str, Any],
) -> None:
    operation_ids = []
    for path, method in documented_operations(openapi_document):
        operation = openapi_document["paths"][path][method.lower()]
        operation_ids.append(operation["operationId"])
        if path.startswith("/api/releases/"):
            assert "security" not in operation, (path, method)  # the document's bearer default
            assert {"401", "403"} <= set(operation["responses"]), (path, method)
        else:
            assert operation["security"] == [], (path, method)
    assert len(operation_ids) == len(set(operation_ids))
    assert openapi_document["security"] == [{"bearer": []}]


# The messages of spec/releases-api.md, each where the spec puts it.
SPEC_ERRORS = [
    ("createRelease", "400", "Invalid release candidate version"),
    ("createRelease", "400", "Invalid commit hash"),
    ("createRelease", "404", "GitHub repository not found"),
    ("createDeployment", "400", "Invalid release candidate version"),
    ("createDeployment", "404", "Release environment not found"),
    ("createDeployment", "404", "Release not found"),
    ("updateDeploymentStatus", "400", "Invalid release candidate version"),
    ("updateDeploymentStatus", "404", "Release environment not found"),
    ("updateDeploymentStatus", "404", "Release not found"),
    ("listDeployments", "404", "Release environment not found"),
    ("listDeployments", "404", "Release project not found"),
    ("rollback", "400", "Environment is frozen"),
    ("rollback", "404", "Release project not found"),
    ("rollback", "404", "Release environment not found"),
    ("rollback", "404", "No previous deployment to roll back from"),
]


@pytest.mark.parametrize(("operation_id", "status", "message"), SPEC_ERRORS)
def test_the_errors_of_the_spec_are_documented(
    openapi_document: dict[str, Any], operation_id: str, status: str, message: str
) -> None:
    operations = {
        item[method]["operationId"]: item[method]
        for item in openapi_document["paths"].values()
        for method in item
        if method in METHODS
    }
    content = operations[operation_id]["responses"][status]["content"]["application/json"]
    examples = [example["value"] for example in content["examples"].values()]

    assert {"error": message} in examples


async def test_a_tour_of_every_operation_is_described_by_the_document(
    api: Api, db: Database, conformance: OpenApiConformance, openapi_document: dict[str, Any]
) -> None:
    """Each documented operation, called for real; every reply is checked against its schema."""
    # Deployment 1 waits for approvals in qa; someone other than the tour's token asked.
    assert (await api.create_rc("v0.9.0-rc1", SHA_C)).status == 201
    other = await make_token(db, "other", actor="other@example.com")
    waiting = await api.post(
        "/api/releases/Backend/environments/qa/deployments",
        {"release_candidate_version": "v0.9.0-rc1"},
        token=other,
    )
    assert (waiting.status, waiting.body["id"]) == (201, 1), waiting.body
    before = conformance.checked
    env = "/api/releases/Backend/environments/production"
    qa = "/api/releases/Backend/environments/qa"
    candidate = "/api/releases/Backend/releases/v0.9.0-rc1"
    calls: list[tuple[str, str, Any]] = [
        (
            "POST",
            "/api/releases/Backend/releases/v1.0.0-rc1",
            {"repo": "acme/backend", "commit": SHA_A},
        ),
        (
            "POST",
            "/api/releases/Backend/releases/v1.1.0-rc1",
            {"repo": "acme/backend", "commit": SHA_B},
        ),
        ("GET", "/api/releases/Backend/releases", None),
        ("POST", env + "/deployments", {"release_candidate_version": "v1.0.0-rc1"}),
        (
            "PATCH",
            env + "/deployments",
            {"release_candidate_version": "v1.0.0-rc1", "status": "success"},
        ),
        ("POST", env + "/deployments", {"release_candidate_version": "v1.1.0-rc1"}),
        (
            "PATCH",
            env + "/deployments",
            {"release_candidate_version": "v1.1.0-rc1", "status": "success"},
        ),
        ("GET", env + "/deployments", None),
        ("GET", "/api/releases/Backend/releases/v1.1.0-rc1", None),
        # A candidate against itself: a report GitHub is not needed for (no App here).
        ("GET", "/api/releases/Backend/releases/v1.1.0-rc1/changes?since=v1.1.0-rc1", None),
        ("PUT", env + "/freeze", {"reason": "tour", "until": "2999-01-01T00:00:00Z"}),
        ("GET", "/api/releases/Backend/environments", None),
        ("POST", env + "/rollback", {"force": True}),
        ("GET", env + "/deployments/4", None),
        ("POST", env + "/deployments/4/cancel", None),
        ("DELETE", env + "/freeze", None),
        ("POST", qa + "/deployments/1/approve", None),
        ("POST", qa + "/deployments/1/reject", {"reason": "tour"}),
        ("POST", candidate + "/reject", {"reason": "tour"}),
        ("DELETE", candidate + "/reject", None),
        ("GET", "/api/releases/Backend/audit?environment=qa", None),
        ("GET", "/healthz", None),
        ("GET", "/readyz", None),
        ("GET", "/metrics", None),
        ("GET", "/api/openapi.json", None),
    ]
    visited = set()

    for method, path, body in calls:
        reply = await api.request(method, path, json_body=body)
        assert 200 <= reply.status < 300, (method, path, reply.body)
        template = conformance.template_for(path.split("?")[0])
        assert template is not None
        visited.add((template, method))

    # The webhook needs the GitHub App configured; tests/test_webhooks.py calls it that way.
    assert visited == documented_operations(openapi_document) - {("/api/github/webhooks", "POST")}
    assert conformance.checked == before + len(calls)


def test_the_conformance_checker_validated_the_replies_of_this_module(
    conformance: OpenApiConformance, checked_before_module: int
) -> None:
    # Runs last in the module: every API call above went through the checker.
    assert conformance.checked > checked_before_module
