"""The OpenAPI 3.1 document at /api/openapi.json, built from the request and response models."""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api import errors, idempotency, webhooks
from api.content_encoding import UNSUPPORTED_CONTENT_ENCODING
from api.requests import INVALID_JSON, NOT_AN_OBJECT
from api.schemas import (
    CreateDeploymentBody,
    CreateReleaseBody,
    DeploymentResponse,
    EnvironmentResponse,
    ErrorResponse,
    FreezeBody,
    HealthResponse,
    ReadyResponse,
    ReleaseCandidateDetailResponse,
    ReleaseCandidateResponse,
    ReleaseResponse,
    RollbackBody,
    UpdateDeploymentBody,
    WebhookResponse,
)
from bot import package_version
from bot.core import errors as domain
from bot.core.pages import DEFAULT_PER_PAGE, MAX_PER_PAGE

_MODELS: list[type[BaseModel]] = [
    CreateReleaseBody,
    CreateDeploymentBody,
    UpdateDeploymentBody,
    RollbackBody,
    FreezeBody,
    ErrorResponse,
    HealthResponse,
    ReadyResponse,
    DeploymentResponse,
    ReleaseCandidateResponse,
    ReleaseCandidateDetailResponse,
    ReleaseResponse,
    EnvironmentResponse,
    WebhookResponse,
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(*messages: str) -> dict[str, Any]:
    response = _json(_ref(ErrorResponse), " / ".join(messages))
    response["content"]["application/json"]["examples"] = {
        f"e{i}": {"value": {"error": m}} for i, m in enumerate(messages)
    }
    return response


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


PROJECT = _path_param("project", "Release project name (case-sensitive).")
ENVIRONMENT = _path_param("environment", "Environment name within the project (case-sensitive).")
VERSION = _path_param("version", "Release candidate version, `<release>-rc<N>`.")
DEPLOYMENT_ID = {
    "name": "deployment_id",
    "in": "path",
    "required": True,
    "description": "The deployment's id (`id` in a deployment).",
    "schema": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999},
}
IDEMPOTENCY_KEY = {
    "name": idempotency.HEADER,
    "in": "header",
    "required": False,
    "description": "Send the same key with every retry of one request: for 24 hours it gets "
    "the first 2xx answer again (with `Idempotent-Replayed: true`) and changes nothing more. "
    "Keys belong to the token; 1 to 255 printable ASCII characters. The same key with another "
    "method, path or body is refused with 422.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
REPLAYED_HEADER = {
    idempotency.REPLAYED_HEADER: {
        "description": "`true` when this is the stored answer to an earlier request with the "
        "same `Idempotency-Key`.",
        "schema": {"type": "string", "enum": ["true"]},
    }
}
WRITE_METHODS = ("post", "put", "patch", "delete")
PAGE_PARAMS = [
    {
        "name": "page",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "default": 1},
    },
    {
        "name": "per_page",
        "in": "query",
        "required": False,
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PER_PAGE,
            "default": DEFAULT_PER_PAGE,
        },
    },
]
LINK_HEADER = {
    "Link": {
        "description": 'GitHub-style pagination links (rel="first", "prev", "next"): '
        "absolute under TARMAC_PUBLIC_URL when it is set, otherwise relative to the request.",
        "schema": {"type": "string"},
    }
}
WEBHOOK_HEADERS = [
    {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }
    for name, description in (
        ("X-GitHub-Event", "The event, e.g. `push`."),
        ("X-GitHub-Delivery", "The delivery's GUID; a redelivery keeps it."),
        ("X-Hub-Signature-256", "`sha256=` and the HMAC-SHA256 hex digest of the body."),
    )
]
COMMON = {
    "400": _error("Invalid JSON body", "Missing field '…'", "Invalid field '…': …"),
    "401": _error(errors.UNAUTHORIZED),
    "403": _error(errors.FORBIDDEN),
    "413": _error(errors.BODY_TOO_LARGE),
    "415": _error(UNSUPPORTED_CONTENT_ENCODING),
    "503": _error(errors.DATABASE_UNAVAILABLE),
}
# A request without a body is never refused for its size or its Content-Encoding.
READ_COMMON = {k: v for k, v in COMMON.items() if k not in ("413", "415")}


def _body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(model)}}}


def _list(model: type[BaseModel], description: str) -> dict[str, Any]:
    response = _json({"type": "array", "items": _ref(model)}, description)
    response["headers"] = LINK_HEADER
    return response


def build_openapi_document() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(m, "serialization") for m in _MODELS],
        ref_template="#/components/schemas/{model}",
    )
    schemas = definitions.get("$defs", {})
    # Request models are read in validation mode: their defaults make fields optional.
    for model in (CreateReleaseBody, CreateDeploymentBody, UpdateDeploymentBody, RollbackBody):
        schemas[model.__name__] = model.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
    freeze_schema = FreezeBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas["FreezeBody"] = freeze_schema
    for schema in schemas.values():
        schema.pop("$defs", None)
    environment_params = [PROJECT, ENVIRONMENT]
    paths: dict[str, Any] = {
        "/api/releases/{project}/releases/{version}": {
            "parameters": [PROJECT, VERSION],
            "post": {
                "operationId": "createRelease",
                "summary": "Create a release candidate at a commit",
                "requestBody": _body(CreateReleaseBody),
                "responses": {
                    "201": _json(_ref(ReleaseCandidateResponse), "The release candidate."),
                    **COMMON,
                    "400": _error(
                        domain.INVALID_RC_VERSION,
                        domain.INVALID_COMMIT,
                        domain.NO_BUILD_WORKFLOW,
                        domain.PROJECT_REMOVED,
                        "Invalid JSON body",
                    ),
                    "404": _error(domain.PROJECT_NOT_FOUND, domain.REPOSITORY_NOT_FOUND),
                    "409": _error(domain.RC_COMMIT_CONFLICT),
                },
            },
            "get": {
                "operationId": "getReleaseCandidate",
                "summary": "One release candidate with its deployments",
                "responses": {
                    "200": _json(_ref(ReleaseCandidateDetailResponse), "The release candidate."),
                    **READ_COMMON,
                    "400": _error(domain.INVALID_RC_VERSION),
                    "404": _error(domain.PROJECT_NOT_FOUND, domain.RELEASE_NOT_FOUND),
                },
            },
        },
        "/api/releases/{project}/releases": {
            "parameters": [PROJECT],
            "get": {
                "operationId": "listReleases",
                "summary": "Releases, newest first, each with its candidates",
                "parameters": PAGE_PARAMS,
                "responses": {
                    "200": _list(ReleaseResponse, "A page of releases."),
                    **READ_COMMON,
                    "404": _error(domain.PROJECT_NOT_FOUND),
                },
            },
        },
        "/api/releases/{project}/environments": {
            "parameters": [PROJECT],
            "get": {
                "operationId": "listEnvironments",
                "summary": "Environments with running version, freeze and active deployment",
                "responses": {
                    "200": _json(
                        {"type": "array", "items": _ref(EnvironmentResponse)}, "Environments."
                    ),
                    **READ_COMMON,
                    "404": _error(domain.PROJECT_NOT_FOUND),
                },
            },
        },
        "/api/releases/{project}/environments/{environment}/deployments": {
            "parameters": environment_params,
            "post": {
                "operationId": "createDeployment",
                "summary": "Deploy a release candidate to the environment",
                "requestBody": _body(CreateDeploymentBody),
                "responses": {
                    "201": _json(_ref(DeploymentResponse), "The new deployment, `pending`."),
                    **COMMON,
                    "400": _error(
                        domain.INVALID_RC_VERSION,
                        domain.ENVIRONMENT_FROZEN,
                        domain.RC_STILL_BUILDING,
                        domain.RC_BUILD_FAILED,
                        domain.ENVIRONMENT_REMOVED,
                    ),
                    "404": _error(
                        domain.PROJECT_NOT_FOUND,
                        domain.ENVIRONMENT_NOT_FOUND,
                        domain.RELEASE_NOT_FOUND,
                    ),
                },
            },
            "patch": {
                "operationId": "updateDeploymentStatus",
                "summary": "Report a deployment status (creates the deployment when needed)",
                "requestBody": _body(UpdateDeploymentBody),
                "responses": {
                    "200": _json(_ref(DeploymentResponse), "The updated or new deployment."),
                    **COMMON,
                    "400": _error(domain.INVALID_RC_VERSION, domain.ENVIRONMENT_REMOVED),
                    "404": _error(
                        domain.PROJECT_NOT_FOUND,
                        domain.ENVIRONMENT_NOT_FOUND,
                        domain.RELEASE_NOT_FOUND,
                    ),
                },
            },
            "get": {
                "operationId": "listDeployments",
                "summary": "Deployments of the environment, newest first",
                "parameters": PAGE_PARAMS,
                "responses": {
                    "200": _list(DeploymentResponse, "A page of deployments."),
                    **READ_COMMON,
                    "404": _error(domain.PROJECT_NOT_FOUND, domain.ENVIRONMENT_NOT_FOUND),
                },
            },
        },
        "/api/releases/{project}/environments/{environment}/deployments/{deployment_id}": {
            "parameters": [*environment_params, DEPLOYMENT_ID],
            "get": {
                "operationId": "getDeployment",
                "summary": "One deployment of the environment",
                "responses": {
                    "200": _json(_ref(DeploymentResponse), "The deployment."),
                    **READ_COMMON,
                    "404": _error(
                        domain.PROJECT_NOT_FOUND,
                        domain.ENVIRONMENT_NOT_FOUND,
                        domain.DEPLOYMENT_NOT_FOUND,
                    ),
                },
            },
        },
        "/api/releases/{project}/environments/{environment}/deployments/{deployment_id}/cancel": {
            "parameters": [*environment_params, DEPLOYMENT_ID],
            "post": {
                "operationId": "cancelDeployment",
                "summary": "Cancel a deployment that has not ended (and its workflow run)",
                "description": "The deployment becomes `canceled` with `error_message` "
                "`Canceled by <actor>`; with the GitHub App its workflow run is canceled and "
                "its GitHub deployment shown inactive. Canceling a canceled deployment again "
                "answers it unchanged.",
                "responses": {
                    "200": _json(_ref(DeploymentResponse), "The canceled deployment."),
                    **COMMON,
                    "404": _error(
                        domain.PROJECT_NOT_FOUND,
                        domain.ENVIRONMENT_NOT_FOUND,
                        domain.DEPLOYMENT_NOT_FOUND,
                    ),
                    "409": _error(domain.DEPLOYMENT_ALREADY_ENDED),
                },
            },
        },
        "/api/releases/{project}/environments/{environment}/rollback": {
            "parameters": environment_params,
            "post": {
                "operationId": "rollback",
                "summary": "Roll the environment back",
                "requestBody": _body(RollbackBody, required=False),
                "responses": {
                    "201": _json(_ref(DeploymentResponse), "The rollback deployment, `pending`."),
                    **COMMON,
                    "400": _error(domain.ENVIRONMENT_FROZEN, domain.ENVIRONMENT_REMOVED),
                    "404": _error(
                        domain.PROJECT_NOT_FOUND,
                        domain.ENVIRONMENT_NOT_FOUND,
                        domain.NOTHING_TO_ROLL_BACK_TO,
                    ),
                },
            },
        },
        "/api/releases/{project}/environments/{environment}/freeze": {
            "parameters": environment_params,
            "put": {
                "operationId": "freezeEnvironment",
                "summary": "Freeze the environment",
                "requestBody": _body(FreezeBody, required=False),
                "responses": {
                    "200": _json(_ref(EnvironmentResponse), "The frozen environment."),
                    **COMMON,
                    "400": _error(domain.FREEZE_UNTIL_IN_PAST, "Invalid field '…': …"),
                    "404": _error(domain.PROJECT_NOT_FOUND, domain.ENVIRONMENT_NOT_FOUND),
                },
            },
            "delete": {
                "operationId": "unfreezeEnvironment",
                "summary": "Unfreeze the environment",
                "responses": {
                    "200": _json(_ref(EnvironmentResponse), "The environment."),
                    **READ_COMMON,
                    "404": _error(domain.PROJECT_NOT_FOUND, domain.ENVIRONMENT_NOT_FOUND),
                },
            },
        },
        webhooks.WEBHOOK_PATH: {
            "post": {
                "operationId": "receiveGitHubWebhook",
                "summary": "GitHub App webhook deliveries (signed with the App's webhook secret)",
                "description": "Verified by `X-Hub-Signature-256`, recorded by "
                "`X-GitHub-Delivery` (a redelivery changes nothing) and handled before the "
                "answer. Bodies are limited to 1 MiB.",
                "security": [],
                "parameters": WEBHOOK_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                    },
                },
                "responses": {
                    "200": _json(
                        _ref(WebhookResponse),
                        "`pong` for a ping; `duplicate` for a delivery already handled.",
                    ),
                    "202": _json(
                        _ref(WebhookResponse),
                        "`accepted`, or `ignored` for events and actions Tarmac does not handle.",
                    ),
                    "400": _error(
                        INVALID_JSON,
                        NOT_AN_OBJECT,
                        webhooks.UNSUPPORTED_CONTENT_TYPE,
                        webhooks.MISSING_EVENT_HEADER,
                        webhooks.MISSING_DELIVERY_HEADER,
                        webhooks.INVALID_EVENT_HEADER,
                        webhooks.INVALID_DELIVERY_HEADER,
                    ),
                    "401": _error(webhooks.INVALID_SIGNATURE),
                    "413": _error(errors.BODY_TOO_LARGE),
                    "415": _error(UNSUPPORTED_CONTENT_ENCODING),
                    "500": _error(errors.INTERNAL_ERROR),
                    "503": _error(webhooks.GITHUB_APP_NOT_CONFIGURED, errors.DATABASE_UNAVAILABLE),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (text exposition format)",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Deliveries, outbox depth and age, GitHub calls, rate "
                        "limit, deployments by status, request latency.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Ready to serve: database, migrations current, outbox worker running",
                "security": [],
                "responses": {
                    "200": _json(_ref(ReadyResponse), "Ready."),
                    "503": _json(_ref(ReadyResponse), "Not ready; the failing checks say why."),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Alive and the database answers",
                "security": [],
                "responses": {
                    "200": _json(_ref(HealthResponse), "Healthy."),
                    "503": _json(_ref(HealthResponse), "The database does not answer."),
                },
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document.")},
            }
        },
    }
    _describe_idempotency(paths)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tarmac releases API",
            "version": package_version(),
            "description": "Release candidates, deployments, rollbacks and freezes. "
            'Every error is `{"error": "…"}`.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "paths": paths,
    }


def _describe_idempotency(paths: dict[str, Any]) -> None:
    """Every write of the API takes an Idempotency-Key (api/idempotency.py)."""
    for template, item in paths.items():
        if not template.startswith("/api/releases/"):
            continue
        for method in WRITE_METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            operation["parameters"] = [*operation.get("parameters", []), IDEMPOTENCY_KEY]
            responses = operation["responses"]
            for status, response in list(responses.items()):
                if status.startswith("2"):
                    responses[status] = {**response, "headers": REPLAYED_HEADER}
            responses["400"] = _with_example(responses["400"], idempotency.INVALID_KEY)
            responses["422"] = _error(idempotency.KEY_REUSED)


def _with_example(response: dict[str, Any], message: str) -> dict[str, Any]:
    examples = response["content"]["application/json"]["examples"]
    content = {
        "schema": response["content"]["application/json"]["schema"],
        "examples": {**examples, f"e{len(examples)}": {"value": {"error": message}}},
    }
    description = f"{response['description']} / {message}"
    return {"description": description, "content": {"application/json": content}}


@functools.cache
def openapi_document_bytes() -> bytes:
    """The served document, built once per process: it depends on the code alone."""
    return json.dumps(build_openapi_document(), indent=1).encode("utf-8")
