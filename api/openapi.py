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
    AuditEventResponse,
    ChangeReportPending,
    ChangeReportResponse,
    CreateDeploymentBody,
    CreateReleaseBody,
    DeploymentResponse,
    EnvironmentResponse,
    ErrorResponse,
    FreezeBody,
    HealthResponse,
    MarkBadBody,
    NotificationBody,
    ReadyResponse,
    RejectDeploymentBody,
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
from bot.notify import delivery as notify

MISSING_FIELD = "Missing field '…'"
INVALID_FIELD = "Invalid field '…': …"
# Why each refusal is given, shown beside it in the reference (docs/api.md).
ERROR_WHEN: dict[str, str] = {
    domain.INVALID_RC_VERSION: "the version is not `<release>-rc<N>` with N a decimal number "
    "without leading zeros (`v30-rc01` and `v1.0.0-rc1-rc2` are refused)",
    domain.INVALID_COMMIT: "`commit` is not 40 hex digits",
    domain.NO_BUILD_WORKFLOW: "`trigger_build_workflow` on a project without `build` in the "
    "projects file",
    domain.BUILD_NEEDS_GITHUB_APP: "`trigger_build_workflow` while no GitHub App is configured "
    "(nothing would run the build or hear how it ends)",
    domain.PROJECT_REMOVED: "a new candidate of a project removed from the projects file",
    domain.ENVIRONMENT_REMOVED: "a new deployment to an environment removed from the projects file",
    domain.ENVIRONMENT_FROZEN: "deploying to a frozen environment, or rolling it back without "
    "`force`; checked before anything changes",
    domain.RC_STILL_BUILDING: "deploying a candidate whose build has not finished",
    domain.RC_BUILD_FAILED: "deploying a candidate whose build failed",
    domain.FREEZE_UNTIL_IN_PAST: "freezing with an end that has passed",
    domain.PROJECT_NOT_FOUND: "no project of that name (names are case-sensitive)",
    domain.ENVIRONMENT_NOT_FOUND: "no environment of that name in the project",
    domain.RELEASE_NOT_FOUND: "no such candidate in the project",
    domain.REPOSITORY_NOT_FOUND: "`repo` is not the project's repository (compared without "
    "regard to case)",
    domain.NOTHING_TO_ROLL_BACK_TO: "no deployment at all, or no earlier candidate the rollback "
    "rule can take",
    domain.DEPLOYMENT_NOT_FOUND: "no deployment of that id in this environment",
    domain.RC_COMMIT_CONFLICT: "the candidate exists at another commit: a candidate never moves",
    domain.DEPLOYMENT_ALREADY_ENDED: "the deployment succeeded, failed or errored (a canceled "
    "one is answered unchanged)",
    domain.CHANGES_NEED_ONE_BASE: "both `since` and `environment` given, or neither",
    domain.NOTHING_RUNNING: "`environment` names one where no deployment has succeeded yet",
    domain.CHANGES_NEED_GITHUB_APP: "no GitHub App is configured (nothing can read the "
    "repository's history)",
    domain.CHANGES_REFUSED: "GitHub refused the comparison (a commit it does not know, or a "
    "permission the App lacks); said once, the next request asks GitHub again",
    # The release policy's refusals (docs/policy.md) begin with these words and go on to say
    # which environment, until when, and what would allow it.
    domain.CANDIDATE_REJECTED: "the candidate is marked bad, force or not; the message goes on "
    "with who marked it and why: `Release candidate is marked bad by ana@example.com: corrupts "
    "invoices; clear the mark to deploy it`",
    domain.FROZEN_BY_CALENDAR: "a calendar window of the projects file is in effect, and no "
    "`force` with a `reason`; the message goes on with when the freeze ends, in the window's "
    "time zone, and which window: `Environment is frozen until Monday 2026-03-09 09:00 EDT "
    "(America/New_York) by its calendar window 'weekend': No deploys over the weekend; deploy "
    "with force and a reason to override it`",
    domain.NOT_PROMOTED: "the candidate has not succeeded in an environment the policy "
    "`requires`, or something else ended there since; the message names it and what runs "
    "there: `v1.4.0-rc2 must succeed in staging before it goes to production (it runs "
    "v1.4.0-rc1); deploy it to staging first`",
    domain.STILL_SOAKING: "its success there ended less than `soak_minutes` ago; the message "
    "says how long it soaked and when it may go: `v1.4.0-rc2 has soaked in staging for 12 of "
    "the 60 minutes production requires: it may go to production from 2026-12-01 15:00:00 UTC "
    "(48 minutes from now)`",
    domain.FORCE_NEEDS_REASON: "`force` without a `reason` (a rollback of a manually frozen "
    "environment alone needs none)",
    domain.SELF_APPROVAL: "the token's actor is the one who asked for the deployment",
    domain.NOT_AN_APPROVER: "the environment's `approvals.from` names teams or roles, which "
    "an API token does not carry (approve on the pull request or in the dashboard); the "
    "message goes on: `…: approvals here come from @acme/release-managers, maintain (signed "
    "in with GitHub or on the pull request)`",
    domain.NOT_WAITING_FOR_APPROVAL: "the deployment does not wait for approvals: its "
    "environment needs none, the last one came already, or it ended",
    errors.NOT_FOUND: "the id is not a number of at most 18 digits",
    errors.UNAUTHORIZED: "no token, or an unknown or revoked one",
    errors.FORBIDDEN: "the token is limited to other projects",
    errors.BODY_TOO_LARGE: "the body is larger than 1 MiB",
    errors.DATABASE_UNAVAILABLE: "the database did not answer; nothing was half-written",
    errors.INTERNAL_ERROR: "a bug; the details are in the server log, never in the answer",
    INVALID_JSON: "the body is not JSON",
    NOT_AN_OBJECT: "the body is JSON, but not an object",
    MISSING_FIELD: "a required field is absent, e.g. `Missing field 'repo'`",
    INVALID_FIELD: "a field has the wrong type or value, e.g. `Invalid field 'commit': Input "
    'should be a valid string` (`"true"` is not a boolean, `1` is not a string)',
    UNSUPPORTED_CONTENT_ENCODING: "a `Content-Encoding` other than `identity`, refused before "
    "the body is read (the answer says `Accept-Encoding: identity`)",
    idempotency.INVALID_KEY: "the `Idempotency-Key` header is empty, too long or not printable "
    "ASCII",
    idempotency.KEY_REUSED: "the key was sent before with another method, path or body; "
    "nothing changes",
    webhooks.GITHUB_APP_NOT_CONFIGURED: "no GitHub App is configured",
    webhooks.INVALID_SIGNATURE: "a missing or bad `X-Hub-Signature-256`; nothing is recorded",
}
PAGE_ERRORS = (
    "Invalid query parameter 'page': must be a whole number, 1 or more",
    f"Invalid query parameter 'per_page': must be from 1 to {MAX_PER_PAGE}",
)

_MODELS: list[type[BaseModel]] = [
    CreateReleaseBody,
    CreateDeploymentBody,
    UpdateDeploymentBody,
    RollbackBody,
    FreezeBody,
    RejectDeploymentBody,
    MarkBadBody,
    ErrorResponse,
    HealthResponse,
    ReadyResponse,
    DeploymentResponse,
    ReleaseCandidateResponse,
    ReleaseCandidateDetailResponse,
    ReleaseResponse,
    EnvironmentResponse,
    ChangeReportResponse,
    ChangeReportPending,
    AuditEventResponse,
    WebhookResponse,
    NotificationBody,
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(*messages: str) -> dict[str, Any]:
    response = _json(_ref(ErrorResponse), " / ".join(messages))
    response["content"]["application/json"]["examples"] = {
        f"e{i}": _error_example(m) for i, m in enumerate(messages)
    }
    return response


def _error_without_body() -> dict[str, Any]:
    response = _json(_ref(ErrorResponse), "Only the HTTP server's own refusals (see the top).")
    response["content"]["application/json"]["examples"] = {}
    return response


def _error_example(message: str) -> dict[str, Any]:
    example: dict[str, Any] = {"value": {"error": message}}
    when = ERROR_WHEN.get(message)
    if when is not None:
        example["summary"] = when
    return example


def _example(value: Any, summary: str | None = None) -> dict[str, Any]:
    return {"value": value} if summary is None else {"summary": summary, "value": value}


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
        "description": "The page, from 1.",
        "schema": {"type": "integer", "minimum": 1, "default": 1},
    },
    {
        "name": "per_page",
        "in": "query",
        "required": False,
        "description": "Items per page.",
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
BODY_ERRORS = (INVALID_JSON, NOT_AN_OBJECT, MISSING_FIELD, INVALID_FIELD)
COMMON = {
    "400": _error(*BODY_ERRORS),
    "401": _error(errors.UNAUTHORIZED),
    "403": _error(errors.FORBIDDEN),
    "413": _error(errors.BODY_TOO_LARGE),
    "415": _error(UNSUPPORTED_CONTENT_ENCODING),
    "503": _error(errors.DATABASE_UNAVAILABLE),
}
# A request without a body is never refused for its size or its Content-Encoding, nor for
# its body's form: only the HTTP server's own refusals remain (the document's description).
READ_COMMON = {k: v for k, v in COMMON.items() if k not in ("413", "415")} | {
    "400": _error_without_body(),
}


def _body(
    model: type[BaseModel], examples: dict[str, Any], required: bool = True
) -> dict[str, Any]:
    content = {"schema": _ref(model), "examples": examples}
    return {"required": required, "content": {"application/json": content}}


def _array(model: type[BaseModel]) -> dict[str, Any]:
    return {"type": "array", "items": _ref(model)}


def _answer(schema: dict[str, Any], description: str, **examples: Any) -> dict[str, Any]:
    response = _json(schema, description)
    response["content"]["application/json"]["examples"] = examples
    return response


def _list(model: type[BaseModel], description: str, example: list[Any]) -> dict[str, Any]:
    response = _answer(_array(model), description, page=_example(example))
    response["headers"] = LINK_HEADER
    return response


# The examples follow one story on the demo projects file (tarmac.example.yml): v1.4.0-rc1 runs
# in staging and production, v1.4.0-rc2 is building.
SHA_RC1 = "9f3a1c0b7e2d4f6a8b0c1d2e3f4a5b6c7d8e9f0a"
ACTOR = "demo@example.com"
RC1 = {
    "version": "v1.4.0-rc1",
    "release_version": "v1.4.0",
    "commit": SHA_RC1,
    "repo": "acme/backend",
    "build_status": "ready",
    "build_error": None,
    "created_at": "2026-11-28T21:09:11.563098Z",
    "rejected": None,
}
RC2_BUILDING = {
    **RC1,
    "version": "v1.4.0-rc2",
    "commit": "5e8b2d4c6a0f1e3d5c7b9a1f3e5d7c9b1a3f5e7d",
    "build_status": "building",
    "created_at": "2026-11-28T21:09:11.661667Z",
}
RC2_FAILED = {
    **RC2_BUILDING,
    "build_status": "failed",
    "build_error": "Build timed out: no result after 60 minutes",
}
BAD_REASON = "corrupts invoices (INC-42)"
RC1_BAD = {
    **RC1,
    "rejected": {"reason": BAD_REASON, "by": ACTOR, "at": "2026-11-29T08:15:00Z"},
}


def _deployment(**fields: Any) -> dict[str, Any]:
    return {
        "id": 1,
        "environment_name": "staging",
        "release_candidate_version": "v1.4.0-rc1",
        "release_version": "v1.4.0",
        "from_release_candidate_version": None,
        "from_release_version": None,
        "status": "pending",
        "actor": ACTOR,
        "deploy_start_at": "2026-11-28T21:09:11.720332Z",
        "deploy_end_at": None,
        "error_message": None,
        "kind": "deploy",
        "waiting_for": None,
        "approvals_required": 0,
        "approvals": [],
        **fields,
    }


DEPLOY_PENDING = _deployment()
DEPLOY_SUCCEEDED = _deployment(status="success", deploy_end_at="2026-11-28T21:09:11.868072Z")
REPORTED = _deployment(
    id=2,
    environment_name="production",
    status="success",
    deploy_start_at="2026-11-28T21:09:11.913466Z",
    deploy_end_at="2026-11-28T21:09:11.913466Z",
    kind="reported",
)
WAITING = _deployment(
    id=5,
    environment_name="production",
    waiting_for="approval of GitHub environment production (its protection rules)",
)
AWAITING_APPROVAL = _deployment(
    id=6,
    environment_name="production",
    release_candidate_version="v1.4.0-rc2",
    from_release_candidate_version="v1.4.0-rc1",
    from_release_version="v1.4.0",
    deploy_start_at="2026-11-29T09:00:00Z",
    actor="ana@example.com",
    waiting_for="approval (1 of 2)",
    approvals_required=2,
    approvals=[
        {
            "approver": ACTOR,
            "at": "2026-11-29T09:05:00Z",
            "expires_at": "2026-11-30T09:05:00Z",
        }
    ],
)
APPROVED = {
    **AWAITING_APPROVAL,
    "waiting_for": None,
    "approvals": [
        *AWAITING_APPROVAL["approvals"],
        {
            "approver": "bo@example.com",
            "at": "2026-11-29T09:12:00Z",
            "expires_at": "2026-11-30T09:12:00Z",
        },
    ],
}
REJECTED = {
    **AWAITING_APPROVAL,
    "status": "canceled",
    "deploy_end_at": "2026-11-29T09:12:00Z",
    "error_message": f"Rejected by {ACTOR}: the migration is not reviewed yet",
    "waiting_for": None,
}
CANCELED = _deployment(
    status="canceled",
    deploy_end_at="2026-11-28T21:09:12.012345Z",
    error_message=f"Canceled by {ACTOR}",
)
ROLLBACK = _deployment(
    id=4,
    environment_name="production",
    from_release_candidate_version="v1.4.0-rc3",
    from_release_version="v1.4.0",
    deploy_start_at="2026-11-28T21:09:12.544884Z",
    kind="rollback",
)


def _environment(**fields: Any) -> dict[str, Any]:
    return {
        "name": "production",
        "production": True,
        "url": None,
        "deploy_workflow": "deploy.yml",
        "auto_deploy": False,
        "removed": False,
        "running_release_candidate_version": "v1.4.0-rc1",
        "running_release_version": "v1.4.0",
        "frozen": False,
        "freeze": None,
        "calendar_freeze": None,
        "next_freeze": None,
        "policy": {"requires": [], "soak_minutes": 0, "approvals_required": 0},
        "active_deployment": None,
        **fields,
    }


STAGING = _environment(
    name="staging", production=False, url="https://staging.example.com", auto_deploy=True
)
PRODUCTION = _environment()
FROZEN = _environment(
    frozen=True,
    freeze={
        "reason": "Black Friday",
        "by": ACTOR,
        "since": "2026-11-28T21:09:12.283657Z",
        "until": "2026-12-01T08:00:00Z",
    },
)
# Production under the policy of docs/policy.md, on a Friday evening.
CALENDAR_FROZEN = _environment(
    calendar_freeze={
        "window": "weekend",
        "reason": "No deploys over the weekend",
        "until": "2026-12-07T14:00:00Z",
    },
    next_freeze={
        "window": "holidays",
        "reason": "End-of-year freeze",
        "starts_at": "2026-12-23T17:00:00Z",
        "ends_at": "2027-01-04T07:00:00Z",
    },
    policy={"requires": ["staging"], "soak_minutes": 60, "approvals_required": 2},
)
AUDIT_EVENTS = [
    {
        "id": 9,
        "at": "2026-11-29T09:12:00Z",
        "door": "api",
        "actor": "bo@example.com",
        "action": "approve",
        "decision": "approved",
        "environment_name": "production",
        "release_candidate_version": "v1.4.0-rc2",
        "deployment_id": 6,
        "reason": None,
    },
    {
        "id": 8,
        "at": "2026-11-29T09:00:00Z",
        "door": "pull_request",
        "actor": "ana",
        "action": "deploy",
        "decision": "forced",
        "environment_name": "production",
        "release_candidate_version": "v1.4.0-rc2",
        "deployment_id": 6,
        "reason": "hotfix for INC-42 (overrode: Environment is frozen)",
    },
    {
        "id": 7,
        "at": "2026-11-29T08:15:00Z",
        "door": "api",
        "actor": ACTOR,
        "action": "mark_bad",
        "decision": "marked",
        "environment_name": None,
        "release_candidate_version": "v1.4.0-rc1",
        "deployment_id": None,
        "reason": BAD_REASON,
    },
]
ACCEPTED_OUTCOME = "release candidate Backend v1.4.0-rc2 created; building"


def _ready(database_writes: str, outbox_worker: str) -> dict[str, Any]:
    checks = {"database": "ok", "migrations": "ok"}
    checks |= {"database_writes": database_writes, "outbox_worker": outbox_worker}
    ready = all(value == "ok" for value in checks.values())
    return {"status": "ready" if ready else "not ready", "checks": checks}


# Each example value above, with the response model it shows: tests/test_api_reference.py
# validates every one, so an example cannot drift from its schema.
CHANGES = """\
The commits a candidate has that another has not, oldest first, and the merged pull requests \
they belong to; from GitHub's compare API and the repository's pull requests \
(docs/change-reports.md says which calls, and why). With the project's `paths:` only the \
commits that touch them count, and only their pull requests. `since` compares from another \
candidate; `environment` from the candidate running there now.

A report between two commits never changes: the first request asks GitHub for it and waits \
up to `TARMAC_CHANGE_REPORT_WAIT_SECONDS` (3 s); a report not in by then is answered `202` \
with `Retry-After`, and every request after it is answered from the database. When the base \
is not an ancestor of the head (history rewritten, or the head is the older candidate) the \
report says `diverged` and lists nothing rather than a guess."""
CHANGES_EXAMPLE: dict[str, Any] = {
    "base": {"release_candidate_version": "v1.3.0-rc2", "commit": "1" * 40},
    "head": {"release_candidate_version": "v1.4.0-rc1", "commit": SHA_RC1},
    "ahead_by": 2,
    "diverged": False,
    "commits": [
        {
            "sha": "2" * 40,
            "message": "Retry the payment webhook (#12)",
            "author": "octocat",
            "url": "https://github.com/acme/backend/commit/" + "2" * 40,
        },
        {
            "sha": SHA_RC1,
            "message": "Show the invoice total (#14)",
            "author": "hubot",
            "url": "https://github.com/acme/backend/commit/" + SHA_RC1,
        },
    ],
    "pull_requests": [
        {
            "number": 12,
            "title": "Retry the payment webhook",
            "author": "octocat",
            "url": "https://github.com/acme/backend/pull/12",
            "merged_at": "2026-11-30T09:12:44Z",
        },
        {
            "number": 14,
            "title": "Show the invoice total",
            "author": "hubot",
            "url": "https://github.com/acme/backend/pull/14",
            "merged_at": "2026-11-30T15:40:02Z",
        },
    ],
}

EXAMPLE_MODELS: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (ReleaseCandidateResponse, RC1),
    (ReleaseCandidateResponse, RC2_BUILDING),
    (ReleaseCandidateResponse, RC2_FAILED),
    (ReleaseCandidateResponse, RC1_BAD),
    *((DeploymentResponse, d) for d in (DEPLOY_PENDING, DEPLOY_SUCCEEDED, REPORTED, WAITING)),
    *((DeploymentResponse, d) for d in (CANCELED, ROLLBACK)),
    *((DeploymentResponse, d) for d in (AWAITING_APPROVAL, APPROVED, REJECTED)),
    *((EnvironmentResponse, e) for e in (STAGING, PRODUCTION, FROZEN, CALENDAR_FROZEN)),
    *((AuditEventResponse, e) for e in AUDIT_EVENTS),
    (ChangeReportResponse, CHANGES_EXAMPLE),
]

CREATE_RELEASE = """A release candidate of the project at a commit of its repository. The commit \
is stored in lower case.

- The same candidate at the same commit again answers 201 with the same candidate: a retried \
request is harmless, and nothing is created twice. At another commit it is 409: a candidate \
never moves.
- With `"trigger_build_workflow": true` the candidate starts `building`: Tarmac dispatches the \
project's build workflow on the repository's default branch (with the candidate's commit as an \
input), and the candidate becomes `ready` or `failed` when the run completes, or `failed` when \
it has not completed `build.timeout_minutes` (60 by default) after the candidate was made. \
Without it the candidate is `ready` at once.
- `build_error` (a Tarmac addition) says why a build failed: `The build workflow run did not \
succeed`, `Build workflow could not be started: <GitHub's reason>`, or `Build timed out: no \
result after N minutes`; it is `null` otherwise.
- A candidate created through the API is not auto-deployed when it is created ready: the \
pipeline that created it decides where it goes (auto-deploy follows builds and tags).
- The answer is the created candidate, where Aviator's specification shows an empty body."""

CREATE_DEPLOYMENT = """Deploy a release candidate of the project to the environment. The new \
deployment is `pending`, of kind `deploy`; `actor` is the token's actor, or the token's name \
when it has none, and `from_release_candidate_version` is the version running in the \
environment when it was made. With the GitHub App, the environment's deploy workflow is \
dispatched and the deployment follows its run.

A new deployment **supersedes** the environment's older deployments still under way \
(`pending`, `in_progress`, `canceling`): they become `canceled`, with `error_message` \
`Superseded by deployment <id>`, and with the GitHub App their workflow runs are canceled and \
their GitHub deployments shown `inactive` (a deployment superseded before its workflow was \
dispatched never runs). So an environment has at most one deployment under way. A frozen \
environment takes no new deployment.

Without an `Idempotency-Key`, a retried deploy makes another deployment, which supersedes the \
first: one deployment stays under way.

**The release policy** of the environment ([docs/policy.md](policy.md)) is checked before \
anything changes, in this order: a candidate marked bad is refused; a manual freeze or a \
calendar window refuses; with `requires`, the candidate must have succeeded in each required \
environment at least `soak_minutes` ago, with nothing ended there since. Each refusal is 400 \
and says what would allow the deploy, and when. `"force": true` with a `reason` overrides the \
freezes and the order (never a bad mark) and is audited as `forced`. With `approvals`, the \
new deployment is `pending` with `waiting_for` `approval (0 of N)` and its workflow is \
dispatched only once N people other than its actor have approved it (`POST …/approve`); \
force does not skip approvals. Every decision, allowed or refused, is in the audit \
(`GET …/audit`)."""

UPDATE_DEPLOYMENT = """How a CD system tells Tarmac what happened. A report never starts a \
workflow, and a freeze never blocks it: it describes what already happened. The answer is 200 \
with the deployment, whether the report changed an existing one or created a new one.

Which deployment a report changes:

- the newest deployment of that candidate in that environment, as long as it is *open*: active \
(`pending`, `in_progress`, `canceling`) or `unknown`;
- when that deployment is already final, the same final status again changes nothing (a \
retried report), and any other status records a new deployment of kind `reported` (a new \
attempt);
- with no deployment of that candidate in that environment, the report creates one of kind \
`reported`.

`deploy_end_at` is set when a deployment first reaches a final status (`success`, `failure`, \
`canceled`, `error`). A report that creates a deployment `in_progress` or `success` supersedes \
the environment's other deployments under way, as a deploy does; a reported `failure`, \
`error`, `canceled` or `unknown` supersedes nothing."""

PAGES = f"""Newest first, a page at a time: `page` from 1, `per_page` from 1 to \
{MAX_PER_PAGE} (default {DEFAULT_PER_PAGE}). The `Link` header gives `first` and `prev` \
(from page 2 on) and `next` (when there is another page); there is no `last`, which would \
mean counting the whole history on every call. A page past the end is an empty list. The \
links are absolute under `TARMAC_PUBLIC_URL` when it is set, otherwise relative to the \
request; they are never built from the request's `Host` header."""

CANCEL = """The deployment becomes `canceled` with `error_message` `Canceled by <actor>`; with \
the GitHub App its workflow run is canceled and its GitHub deployment shown `inactive`. \
Canceling a canceled deployment again answers it unchanged (200). Auto-deploy is not paused."""

ROLLBACK_RULE = """A `rollback` deployment, `pending`, of the target the rollback rule picks \
([README](../README.md#rollback-and-freezes)):

- an environment with no deployment at all has nothing to roll back from (404);
- a frozen environment is rolled back only with `{"force": true}`, checked before anything \
changes (400);
- if the newest deployment succeeded, the target is the newest successfully deployed candidate \
that is neither the running one nor one an earlier rollback rolled away from: rolling back \
twice goes back two versions, never forward again;
- if the newest deployment failed, errored, was canceled or is still under way, the running \
candidate is deployed again, unless a rollback rolled away from it (a second rollback while \
the first is under way keeps the first one's target);
- every deployment under way is canceled with `Canceled by a rollback`, in the same \
transaction that creates the rollback deployment;
- a candidate marked bad is never the target: the rule looks past it;
- a calendar window refuses a rollback too, unless `force` comes with a `reason`; the \
promotion order and approvals do not apply to rollbacks."""

FREEZE = """The environment takes no new deployment (through the API, PR comments or \
auto-deploy) and no rollback without `force` until `DELETE`, or until `until` when one is \
given. Status reports always go through. `by` is the token's actor. Freezing a frozen \
environment again replaces the reason and the end, and keeps `since`; an `until` sent with \
another offset is answered in UTC."""

ENVIRONMENTS = """Every environment of the project, in the order of the projects file, with \
its running version (the candidate of its newest `success` deployment), its freezes and its \
newest active deployment. Environments removed from the projects file are included, with \
`"removed": true`.

`frozen` and `freeze` are the manual freeze; `calendar_freeze` is the calendar window of the \
projects file in effect, with when the freeze ends (either refuses deploys). `next_freeze` is \
the next window to begin, and `policy` what the projects file asks of a deploy here \
(docs/policy.md)."""

APPROVE = """The token's actor approves a deployment that waits for approvals (`waiting_for` \
`approval (1 of 2)`). The last approval needed dispatches its deploy workflow (with the \
GitHub App), once. The actor who asked for the deployment cannot approve it; the same actor \
approving again changes nothing (200, unchanged). An approval counts for the deployment it \
was given to, until `expires_at`.

An API token has no GitHub person behind it: it may approve only where the environment's \
`approvals.from` is empty. Where `from` names teams or roles, approve with `/approve` on the \
pull request or in the dashboard, signed in with GitHub."""

REJECT_DEPLOYMENT = """A deployment waiting for approvals is rejected: it becomes `canceled` \
with `error_message` `Rejected by <actor>: <reason>`, and never runs. Audited."""

MARK_BAD = """The candidate is marked bad: every deploy of it, forced or not, through every \
door (the API, pull-request commands, the dashboard, auto-deploy), is refused with who marked \
it and why, and the rollback rule never picks it, until the mark is cleared (`DELETE`). \
Marking it again keeps `at` and replaces `reason` and `by`. Deployments already under way are \
left as they are. Audited."""

CLEAR_BAD = """The candidate may be deployed again. A candidate not marked bad is answered as \
it is. Audited."""

AUDIT = """Every decision of the release policy about the project, newest first: deploys and \
rollbacks allowed, `waiting` for approvals, `forced` (`reason` says why and what force \
overrode) or `refused` (`reason` is the refusal, as it was answered); approvals given or \
refused; deployments rejected; candidates marked bad or cleared. `door` is how it came: \
`api`, `pull_request`, `dashboard`, `auto_deploy` or `protection_rule`. A refused request \
changed nothing else, and its refusal is still here.

`environment` keeps one environment's decisions (a candidate's marks belong to none). """

READYZ = """Ready to serve: the database answers, its schema is at the newest migration, \
writes are not failing, and (with a GitHub App) the outbox worker is running.

`database_writes` is `failing: <what failed>` (SQLite's error name such as \
`SQLITE_IOERR_WRITE`, `SQLITE_FULL` or `SQLITE_READONLY`, or the driver's error class on \
PostgreSQL) when the newest write transaction failed on the database's side and a write \
`/readyz` then tries itself fails too. That write changes nothing (it rewrites \
`alembic_version`'s row with its own value) and runs only after a write failed, at most once a \
second: a disk that is full, read-only or failing turns `/readyz` to 503 at the first write it \
refuses, and back to 200 by itself once writes work. `/healthz` stays 200 while reads work."""

METRICS = """Prometheus' text format (prometheus-client). Keep it off the public internet at \
your proxy.

| metric | what |
|---|---|
| `tarmac_webhook_deliveries_total{event, outcome}` | deliveries: `accepted`, `ignored`, \
`duplicate`, `rejected` (bad signature or body); `event` is one Tarmac handles, `other`, or \
`unverified` for a rejected one (counted once handled: `accepted`, `ignored` and \
`duplicate` by the inbox's reader, or at intake for what no handler acts on) |
| `tarmac_webhook_inbox_seconds` | histogram: from a delivery stored in the inbox (its 2xx may \
leave) to its handling committed |
| `tarmac_webhook_inbox_pending` | deliveries stored in the inbox, not handled yet (read at \
scrape time) |
| `tarmac_outbox_pending`, `tarmac_outbox_oldest_pending_age_seconds` | GitHub calls waiting, \
and how long the oldest has waited (read at scrape time) |
| `tarmac_github_calls_total{endpoint, status}` | calls to GitHub by method and path template; \
status `2xx`, the HTTP code, or `connection_error` |
| `tarmac_github_rate_limit_remaining` | `x-ratelimit-remaining` of GitHub's latest answer \
(absent until GitHub has answered: without an App there is none) |
| `tarmac_deployments{project, environment, status}` | deployments by project, environment and \
status (a `GROUP BY` at scrape time) |
| `tarmac_http_request_duration_seconds{method, route, status}` | request latency histogram, \
by route template; a method outside the standard ones is `other` |

No label value is taken from what a client merely claims (an unsigned delivery's event, a \
made-up method, a path): unauthenticated requests cannot grow the number of series."""

WEBHOOK = """Verified by `X-Hub-Signature-256` first (the signature is required; a delivery \
without a valid one is recorded nowhere), then stored as it came in the inbox; from that \
commit on a 2xx may leave (`queued`). A delivery no handler acts on (a CI run of another \
workflow, a branch push, a repository without a project, an event Tarmac does not handle) is \
instead recorded there with its outcome and answered `ignored` at once. The inbox is handled \
in arrival order, once by `X-GitHub-Delivery` (a redelivery changes nothing); with \
`TARMAC_WEBHOOK_ANSWER_WAIT_SECONDS` above 0 the answer waits up to that long for the handling \
and carries its outcome. GitHub calls happen afterwards through the outbox. Bodies are limited \
to 1 MiB (Tarmac's events are far smaller); a compressed body is refused before it is read \
(GitHub never compresses deliveries). Without a GitHub App configured the endpoint answers 503."""

API = """Release candidates, deployments, rollbacks and freezes, following Aviator's Releases \
REST API (same paths, bodies, status codes and error messages), with release and environment \
listings, freezes, cancel, health checks and this document added.

- **Authentication.** Every `/api/releases/...` call needs `Authorization: Bearer <token>` \
(`tarmac token create`). A missing, unknown or revoked token gets 401; a token limited to \
other projects gets 403.
- **Bodies** are JSON (`Content-Type: application/json`), at most 1 MiB, uncompressed. Unknown \
fields are ignored, so a newer client works with an older server; types are strict (`"true"` \
is not a boolean, `1` is not a string).
- **Errors** are `{"error": "<message>"}` with a fixed message; no error repeats what the \
request held. The release policy's refusals (docs/policy.md) begin with a fixed text and go \
on to say which environment, until when, and what would allow the deploy.
- **Timestamps** are ISO 8601 in UTC, ending in `Z`. **Ids** are integers.
- **Retries.** Every write (`POST`, `PUT`, `PATCH`, `DELETE`) takes an `Idempotency-Key` \
header (a UUID, or a pipeline's run id and step). For 24 hours a retry with the same key, \
method, path and body is not run again: it gets the first answer, status and body, with \
`Idempotent-Replayed: true`. The answer is stored in the same transaction as the change it \
answers, so it holds across restarts and replicas, and two requests with one key at the same \
moment make one change. Only 2xx answers are kept: a refused request changed nothing, so its \
retry runs again. Keys belong to the token that sent them; expired keys are deleted hourly.
- **Order of checks.** The token (401, 403); then the body's form (valid JSON, required \
fields, types); then the path (project, then environment); then the values (version, commit, \
repository, build status, freeze). The first problem found is the one reported.

Any request may also get, before any of that, an answer of the HTTP server itself, in the same \
JSON form:

| status | error | when |
|---|---|---|
| 400 | `Malformed HTTP request` | the HTTP parser refused the request: a bare CR or LF in a \
header, a character a header may not hold, too many headers (more than 128), framing that does \
not add up |
| 400 | `Invalid HTTP method`, `Invalid request line`, `Invalid request target`, `Invalid \
header` | the request is not HTTP/1.x (TLS sent to the plain-HTTP port lands here too) |
| 400 | `Request line or header longer than 8190 bytes` | a request line, or one header (name \
and value), over 8190 bytes |
| 400 | `Invalid chunked body`, `Body shorter than its Content-Length` | a body that breaks off |
| 404 | `Not found` | no such path |
| 405 | `Method not allowed` | the path exists, the method does not (an `Allow` header lists \
the methods) |
| 408 | `Request headers not received in time` | the request head took longer than \
`TARMAC_HEADER_TIMEOUT` (10 s) |
| 417 | `Expectation Failed` | an `Expect` header other than `100-continue` |
| 500 | `Internal server error` | a bug; the details are in the server log, never in the \
answer |
| 503 | `Database unavailable, try again` | the database did not answer; nothing was \
half-written |"""


def build_openapi_document() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(m, "serialization") for m in _MODELS],
        ref_template="#/components/schemas/{model}",
    )
    schemas = definitions.get("$defs", {})
    # Request models are read in validation mode: their defaults make fields optional.
    for model in (
        CreateReleaseBody,
        CreateDeploymentBody,
        UpdateDeploymentBody,
        RollbackBody,
        RejectDeploymentBody,
        MarkBadBody,
    ):
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
                "description": CREATE_RELEASE,
                "requestBody": _body(
                    CreateReleaseBody,
                    {
                        "ready": _example({"repo": "acme/backend", "commit": SHA_RC1.upper()}),
                        "build": _example(
                            {
                                "repo": "acme/backend",
                                "commit": RC2_BUILDING["commit"],
                                "trigger_build_workflow": True,
                            },
                            "built by the project's build workflow",
                        ),
                    },
                ),
                "responses": {
                    "201": _answer(
                        _ref(ReleaseCandidateResponse),
                        "The release candidate.",
                        ready=_example(RC1),
                        building=_example(RC2_BUILDING, "with `trigger_build_workflow`"),
                    ),
                    **COMMON,
                    "400": _error(
                        domain.INVALID_RC_VERSION,
                        domain.INVALID_COMMIT,
                        domain.NO_BUILD_WORKFLOW,
                        domain.BUILD_NEEDS_GITHUB_APP,
                        domain.PROJECT_REMOVED,
                        *BODY_ERRORS,
                    ),
                    "404": _error(domain.PROJECT_NOT_FOUND, domain.REPOSITORY_NOT_FOUND),
                    "409": _error(domain.RC_COMMIT_CONFLICT),
                },
            },
            "get": {
                "operationId": "getReleaseCandidate",
                "summary": "One release candidate with its deployments",
                "description": "The candidate and every deployment of it, in every environment, "
                "newest first.",
                "responses": {
                    "200": _answer(
                        _ref(ReleaseCandidateDetailResponse),
                        "The release candidate.",
                        deployed=_example({**RC1, "deployments": [REPORTED, DEPLOY_SUCCEEDED]}),
                    ),
                    **READ_COMMON,
                    "400": _error(domain.INVALID_RC_VERSION),
                    "404": _error(domain.PROJECT_NOT_FOUND, domain.RELEASE_NOT_FOUND),
                },
            },
        },
        "/api/releases/{project}/releases/{version}/changes": {
            "parameters": [PROJECT, VERSION],
            "get": {
                "operationId": "getChanges",
                "summary": "What a candidate ships: commits and pull requests since another",
                "description": CHANGES,
                "parameters": [
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "description": "The candidate to compare from (a version of this "
                        "project). Give this or `environment`.",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "environment",
                        "in": "query",
                        "required": False,
                        "description": "Compare from what runs in this environment now.",
                        "schema": {"type": "string"},
                    },
                ],
                "responses": {
                    "200": _answer(
                        _ref(ChangeReportResponse),
                        "The change report.",
                        since=_example(CHANGES_EXAMPLE),
                    ),
                    "202": {
                        **_answer(
                            _ref(ChangeReportPending),
                            "Being fetched from GitHub; ask again after `Retry-After` seconds.",
                            pending=_example(
                                {
                                    "status": "pending",
                                    "message": "The change report is being fetched from "
                                    "GitHub; ask again after Retry-After",
                                    "base": CHANGES_EXAMPLE["base"],
                                    "head": CHANGES_EXAMPLE["head"],
                                }
                            ),
                        ),
                        "headers": {
                            "Retry-After": {
                                "description": "Seconds to wait before asking again.",
                                "schema": {"type": "integer"},
                            }
                        },
                    },
                    **READ_COMMON,
                    "400": _error(domain.CHANGES_NEED_ONE_BASE, domain.INVALID_RC_VERSION),
                    "404": _error(
                        domain.PROJECT_NOT_FOUND,
                        domain.RELEASE_NOT_FOUND,
                        domain.ENVIRONMENT_NOT_FOUND,
                        domain.NOTHING_RUNNING,
                    ),
                    "409": _error(domain.CHANGES_NEED_GITHUB_APP, domain.CHANGES_REFUSED),
                },
            },
        },
        "/api/releases/{project}/releases": {
            "parameters": [PROJECT],
            "get": {
                "operationId": "listReleases",
                "summary": "Releases, newest first, each with its candidates",
                "description": "Each release has its candidates, highest RC number first. " + PAGES,
                "parameters": PAGE_PARAMS,
                "responses": {
                    "200": _list(
                        ReleaseResponse,
                        "A page of releases.",
                        [
                            {
                                "version": "v1.4.0",
                                "created_at": RC1["created_at"],
                                "release_candidates": [RC2_BUILDING, RC1],
                            }
                        ],
                    ),
                    **READ_COMMON,
                    "400": _error(*PAGE_ERRORS),
                    "404": _error(domain.PROJECT_NOT_FOUND),
                },
            },
        },
        "/api/releases/{project}/environments": {
            "parameters": [PROJECT],
            "get": {
                "operationId": "listEnvironments",
                "summary": "Environments with running version, freeze and active deployment",
                "description": ENVIRONMENTS,
                "responses": {
                    "200": _answer(
                        _array(EnvironmentResponse),
                        "Environments.",
                        demo=_example([STAGING, PRODUCTION]),
                        policy=_example(
                            [STAGING, CALENDAR_FROZEN],
                            "production with a policy, during its weekend window",
                        ),
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
                "description": CREATE_DEPLOYMENT,
                "requestBody": _body(
                    CreateDeploymentBody,
                    {
                        "deploy": _example({"release_candidate_version": "v1.4.0-rc1"}),
                        "forced": _example(
                            {
                                "release_candidate_version": "v1.4.0-rc2",
                                "force": True,
                                "reason": "hotfix for INC-42",
                            },
                            "break glass: past a freeze and the promotion order, audited",
                        ),
                    },
                ),
                "responses": {
                    "201": _answer(
                        _ref(DeploymentResponse),
                        "The new deployment, `pending`.",
                        deploy=_example(DEPLOY_PENDING),
                        waiting=_example(
                            {
                                **AWAITING_APPROVAL,
                                "waiting_for": "approval (0 of 2)",
                                "approvals": [],
                            },
                            "to an environment with `approvals: {required: 2}`",
                        ),
                    ),
                    **COMMON,
                    "400": _error(
                        domain.INVALID_RC_VERSION,
                        domain.ENVIRONMENT_FROZEN,
                        domain.RC_STILL_BUILDING,
                        domain.RC_BUILD_FAILED,
                        domain.ENVIRONMENT_REMOVED,
                        domain.CANDIDATE_REJECTED,
                        domain.FROZEN_BY_CALENDAR,
                        domain.NOT_PROMOTED,
                        domain.STILL_SOAKING,
                        domain.FORCE_NEEDS_REASON,
                        *BODY_ERRORS,
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
                "description": UPDATE_DEPLOYMENT,
                "requestBody": _body(
                    UpdateDeploymentBody,
                    {
                        "success": _example(
                            {"release_candidate_version": "v1.4.0-rc1", "status": "success"}
                        ),
                        "failure": _example(
                            {
                                "release_candidate_version": "v1.4.0-rc1",
                                "status": "failure",
                                "error_message": "smoke tests failed",
                            },
                            "`error_message` (a Tarmac addition): up to 2000 characters",
                        ),
                    },
                ),
                "responses": {
                    "200": _answer(
                        _ref(DeploymentResponse),
                        "The updated or new deployment.",
                        updated=_example(DEPLOY_SUCCEEDED, "a deploy Tarmac started, now done"),
                        created=_example(REPORTED, "an environment Tarmac did not deploy to"),
                    ),
                    **COMMON,
                    "400": _error(
                        domain.INVALID_RC_VERSION, domain.ENVIRONMENT_REMOVED, *BODY_ERRORS
                    ),
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
                "description": PAGES,
                "parameters": PAGE_PARAMS,
                "responses": {
                    "200": _list(DeploymentResponse, "A page of deployments.", [DEPLOY_SUCCEEDED]),
                    **READ_COMMON,
                    "400": _error(*PAGE_ERRORS),
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
                    "200": _answer(
                        _ref(DeploymentResponse),
                        "The deployment.",
                        done=_example(DEPLOY_SUCCEEDED),
                        waiting=_example(WAITING, "its deploy job held by a GitHub environment"),
                    ),
                    **READ_COMMON,
                    "404": _error(
                        domain.PROJECT_NOT_FOUND,
                        domain.ENVIRONMENT_NOT_FOUND,
                        domain.DEPLOYMENT_NOT_FOUND,
                        errors.NOT_FOUND,
                    ),
                },
            },
        },
        # Before cancel: tests/test_schemathesis.py's run reaches approve's success before
        # the waiting deployment is rejected or canceled.
        "/api/releases/{project}/environments/{environment}/deployments/{deployment_id}/approve": {
            "parameters": [*environment_params, DEPLOYMENT_ID],
            "post": {
                "operationId": "approveDeployment",
                "summary": "Approve a deployment that waits for approvals",
                "description": APPROVE,
                "responses": {
                    "200": _answer(
                        _ref(DeploymentResponse),
                        "The deployment, with the approvals given so far.",
                        waiting=_example(AWAITING_APPROVAL, "1 of 2: it waits for one more"),
                        approved=_example(APPROVED, "the last one: its workflow is dispatched"),
                    ),
                    **COMMON,
                    "400": _error(
                        domain.NOT_WAITING_FOR_APPROVAL,
                        domain.SELF_APPROVAL,
                        domain.NOT_AN_APPROVER,
                        domain.CANDIDATE_REJECTED,
                    ),
                    "404": _error(
                        domain.PROJECT_NOT_FOUND,
                        domain.ENVIRONMENT_NOT_FOUND,
                        domain.DEPLOYMENT_NOT_FOUND,
                        errors.NOT_FOUND,
                    ),
                },
            },
        },
        "/api/releases/{project}/environments/{environment}/deployments/{deployment_id}/reject": {
            "parameters": [*environment_params, DEPLOYMENT_ID],
            "post": {
                "operationId": "rejectDeployment",
                "summary": "Reject a deployment that waits for approvals (it is canceled)",
                "description": REJECT_DEPLOYMENT,
                "requestBody": _body(
                    RejectDeploymentBody,
                    {"reject": _example({"reason": "the migration is not reviewed yet"})},
                ),
                "responses": {
                    "200": _answer(
                        _ref(DeploymentResponse),
                        "The canceled deployment.",
                        rejected=_example(REJECTED),
                    ),
                    **COMMON,
                    "400": _error(domain.NOT_WAITING_FOR_APPROVAL, *BODY_ERRORS),
                    "404": _error(
                        domain.PROJECT_NOT_FOUND,
                        domain.ENVIRONMENT_NOT_FOUND,
                        domain.DEPLOYMENT_NOT_FOUND,
                        errors.NOT_FOUND,
                    ),
                },
            },
        },
        "/api/releases/{project}/environments/{environment}/deployments/{deployment_id}/cancel": {
            "parameters": [*environment_params, DEPLOYMENT_ID],
            "post": {
                "operationId": "cancelDeployment",
                "summary": "Cancel a deployment that has not ended (and its workflow run)",
                "description": CANCEL,
                "responses": {
                    "200": _answer(
                        _ref(DeploymentResponse),
                        "The canceled deployment.",
                        canceled=_example(CANCELED),
                    ),
                    **COMMON,
                    "404": _error(
                        domain.PROJECT_NOT_FOUND,
                        domain.ENVIRONMENT_NOT_FOUND,
                        domain.DEPLOYMENT_NOT_FOUND,
                        errors.NOT_FOUND,
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
                "description": ROLLBACK_RULE,
                "requestBody": _body(
                    RollbackBody,
                    {
                        "force": _example({"force": True}, "roll back a frozen environment"),
                        "calendar": _example(
                            {"force": True, "reason": "INC-42: checkout is down"},
                            "roll back during a calendar window",
                        ),
                    },
                    required=False,
                ),
                "responses": {
                    "201": _answer(
                        _ref(DeploymentResponse),
                        "The rollback deployment, `pending`.",
                        rollback=_example(ROLLBACK, "production ran v1.4.0-rc3, after v1.4.0-rc1"),
                    ),
                    **COMMON,
                    "400": _error(
                        domain.ENVIRONMENT_FROZEN,
                        domain.FROZEN_BY_CALENDAR,
                        domain.FORCE_NEEDS_REASON,
                        domain.ENVIRONMENT_REMOVED,
                        *BODY_ERRORS,
                    ),
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
                "description": FREEZE,
                "requestBody": _body(
                    FreezeBody,
                    {
                        "until": _example(
                            {"reason": "Black Friday", "until": "2026-12-01T09:00:00+01:00"}
                        )
                    },
                    required=False,
                ),
                "responses": {
                    "200": _answer(
                        _ref(EnvironmentResponse),
                        "The frozen environment.",
                        frozen=_example(FROZEN),
                    ),
                    **COMMON,
                    "400": _error(domain.FREEZE_UNTIL_IN_PAST, *BODY_ERRORS),
                    "404": _error(domain.PROJECT_NOT_FOUND, domain.ENVIRONMENT_NOT_FOUND),
                },
            },
            "delete": {
                "operationId": "unfreezeEnvironment",
                "summary": "Unfreeze the environment",
                "description": "Ends the freeze at once; an environment that is not frozen is "
                "answered as it is.",
                "responses": {
                    "200": _answer(
                        _ref(EnvironmentResponse), "The environment.", unfrozen=_example(PRODUCTION)
                    ),
                    **READ_COMMON,
                    "404": _error(domain.PROJECT_NOT_FOUND, domain.ENVIRONMENT_NOT_FOUND),
                },
            },
        },
        # After the deployment routes: tests/test_schemathesis.py's run marks candidates bad
        # (and clears them) only once it has deployed them.
        "/api/releases/{project}/releases/{version}/reject": {
            "parameters": [PROJECT, VERSION],
            "post": {
                "operationId": "markBad",
                "summary": "Mark a release candidate bad: no deploy takes it until cleared",
                "description": MARK_BAD,
                "requestBody": _body(MarkBadBody, {"bad": _example({"reason": BAD_REASON})}),
                "responses": {
                    "200": _answer(
                        _ref(ReleaseCandidateResponse),
                        "The candidate, marked bad.",
                        bad=_example(RC1_BAD),
                    ),
                    **COMMON,
                    "400": _error(domain.INVALID_RC_VERSION, *BODY_ERRORS),
                    "404": _error(domain.PROJECT_NOT_FOUND, domain.RELEASE_NOT_FOUND),
                },
            },
            "delete": {
                "operationId": "clearBad",
                "summary": "Clear a release candidate's bad mark",
                "description": CLEAR_BAD,
                "responses": {
                    "200": _answer(
                        _ref(ReleaseCandidateResponse), "The candidate.", cleared=_example(RC1)
                    ),
                    **READ_COMMON,
                    "400": _error(domain.INVALID_RC_VERSION),
                    "404": _error(domain.PROJECT_NOT_FOUND, domain.RELEASE_NOT_FOUND),
                },
            },
        },
        "/api/releases/{project}/audit": {
            "parameters": [PROJECT],
            "get": {
                "operationId": "listAudit",
                "summary": "The release policy's decisions, newest first",
                "description": AUDIT + PAGES,
                "parameters": [
                    {
                        "name": "environment",
                        "in": "query",
                        "required": False,
                        "description": "Only this environment's decisions.",
                        "schema": {"type": "string"},
                    },
                    *PAGE_PARAMS,
                ],
                "responses": {
                    "200": _list(AuditEventResponse, "A page of decisions.", AUDIT_EVENTS),
                    **READ_COMMON,
                    "400": _error(*PAGE_ERRORS),
                    "404": _error(domain.PROJECT_NOT_FOUND, domain.ENVIRONMENT_NOT_FOUND),
                },
            },
        },
        webhooks.WEBHOOK_PATH: {
            "post": {
                "operationId": "receiveGitHubWebhook",
                "summary": "GitHub App webhook deliveries (signed with the App's webhook secret)",
                "description": WEBHOOK,
                "security": [],
                "parameters": WEBHOOK_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"type": "object"}},
                    },
                },
                "responses": {
                    "200": _answer(
                        _ref(WebhookResponse),
                        "`pong` for a ping; `duplicate` for a delivery already handled.",
                        pong=_example({"status": "pong"}),
                        duplicate=_example(
                            {"status": "duplicate", "outcome": ACCEPTED_OUTCOME},
                            "a redelivery (same `X-GitHub-Delivery`): the first one's outcome, "
                            "no second effect",
                        ),
                    ),
                    "202": _answer(
                        _ref(WebhookResponse),
                        "`accepted`, or `ignored` for what Tarmac does not act on (at once "
                        "when that is known at intake, without reading the database); "
                        "`queued` when the delivery is stored and its handling did not end "
                        "within `TARMAC_WEBHOOK_ANSWER_WAIT_SECONDS` (it is handled from the "
                        "inbox, once).",
                        accepted=_example({"status": "accepted", "outcome": ACCEPTED_OUTCOME}),
                        ignored=_example({"status": "ignored", "outcome": "comment by a bot"}),
                        queued=_example({"status": "queued"}, "stored, to be handled"),
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
                "description": METRICS,
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
                "description": READYZ,
                "security": [],
                "responses": {
                    "200": _answer(
                        _ref(ReadyResponse), "Ready.", ready=_example(_ready("ok", "ok"))
                    ),
                    "503": _answer(
                        _ref(ReadyResponse),
                        "Not ready; the failing checks say why.",
                        worker=_example(_ready("ok", "not running")),
                        disk=_example(_ready("failing: SQLITE_FULL", "ok")),
                    ),
                },
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Alive and the database answers",
                "description": "For a load balancer's health check: 503 means stop sending "
                "traffic here. It stays 200 while reads work, even when writes fail (see "
                "`/readyz`): restarting would not mend the disk.",
                "security": [],
                "responses": {
                    "200": _answer(_ref(HealthResponse), "Healthy.", ok=_example({"status": "ok"})),
                    "503": _answer(
                        _ref(HealthResponse),
                        "The database does not answer.",
                        down=_example({"status": "unavailable", "error": "Database unavailable"}),
                    ),
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
            "description": API,
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": schemas,
        },
        "paths": paths,
        "webhooks": {"notification": _notification_webhook()},
    }


NOTIFICATION = f"""What Tarmac POSTs to each generic webhook receiver of the projects file \
(`notifications:` entries with `webhook:`), once per transition it hears of (`events:`, all by \
default). See README.md, Notifications.

**Verifying.** `{notify.SIGNATURE_HEADER}` is `sha256=` and the hex HMAC-SHA256, keyed with the \
receiver's secret, of `<{notify.TIMESTAMP_HEADER}>.<raw body>` (the timestamp, a dot, the body's \
bytes as received). Compare it in constant time; refuse a `{notify.TIMESTAMP_HEADER}` (Unix \
seconds, the time of this attempt) more than 5 minutes from your clock, so a captured delivery \
cannot be replayed later; and drop a `{notify.DELIVERY_HEADER}` you have seen (a retry after a \
lost answer, or a repeat after a crash), so each message counts once.

**Answering.** Any 2xx: delivered. 5xx, 408, 429 (with `Retry-After` in seconds), a timeout \
(10 s) or a refused connection: sent again later, with backoff up to a minute, the receiver's \
later messages waiting behind it in order. Any other answer (a redirect included: none is \
followed) refuses that message for good."""


def _header(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _notification_webhook() -> dict[str, Any]:
    return {
        "post": {
            "operationId": "notification",
            "summary": "A notification of one transition",
            "description": NOTIFICATION,
            "security": [],
            "parameters": [
                _header(notify.EVENT_HEADER, "The body's `event`."),
                _header(notify.DELIVERY_HEADER, "The body's `id`: the same on every retry."),
                _header(notify.TIMESTAMP_HEADER, "Unix seconds when this attempt was signed."),
                _header(
                    notify.SIGNATURE_HEADER,
                    "`sha256=<hex HMAC-SHA256>` of `<timestamp>.<body>`, keyed with the secret.",
                ),
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": _ref(NotificationBody),
                        "examples": {
                            "succeeded": _example(NOTIFICATION_EXAMPLE),
                            "window_opened": _example(WINDOW_OPENED_EXAMPLE),
                        },
                    }
                },
            },
            "responses": {
                "200": {"description": "Delivered (any 2xx)."},
                "500": {"description": "Sent again later (any 5xx, 408 or 429)."},
            },
        }
    }


NOTIFICATION_EXAMPLE = {
    "id": "5b0e8f0c-0c2d-4a51-9d0e-2f3c8d1e6a77",
    "event": "deployment.succeeded",
    "timestamp": "2026-12-01T10:04:12+00:00",
    "project": "Backend",
    "environment": "production",
    "actor": "ana@example.com",
    "deployment": {
        "id": 42,
        "kind": "deploy",
        "status": "success",
        "actor": "ana@example.com",
        "error_message": None,
        "workflow_run_url": "https://github.com/acme/backend/actions/runs/7001",
        "environment_url": "https://example.com",
        "started_at": "2026-12-01T10:00:03+00:00",
        "ended_at": "2026-12-01T10:04:12+00:00",
    },
    "release_candidate": {
        "version": "v1.4.0-rc2",
        "repo": "acme/backend",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "tag": "v1.4.0-rc2",
        "build_status": "ready",
        "build_run_url": "https://github.com/acme/backend/actions/runs/6990",
        "build_error": None,
    },
    "freeze": None,
    "reason": None,
    "window": None,
    "pull_requests": [{"number": 812, "title": "Faster checkout", "url": None}],
}

WINDOW_OPENED_EXAMPLE = {
    "id": "0d7c1b9e-3a44-4f0e-8b61-5e2a9c7d4f10",
    "event": "freeze_window.opened",
    "timestamp": "2026-03-06T22:00:00+00:00",
    "project": "Backend",
    "environment": "production",
    "actor": None,
    "deployment": None,
    "release_candidate": None,
    "freeze": None,
    "reason": None,
    "window": {
        "name": "weekend",
        "reason": "No deploys over the weekend",
        "timezone": "America/New_York",
        "start": "2026-03-06T22:00:00+00:00",
        "end": "2026-03-09T13:00:00+00:00",
        "start_local": "2026-03-06T17:00:00-05:00",
        "end_local": "2026-03-09T09:00:00-04:00",
    },
    "pull_requests": None,
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
        "examples": {**examples, f"e{len(examples)}": _error_example(message)},
    }
    description = f"{response['description']} / {message}"
    return {"description": description, "content": {"application/json": content}}


@functools.cache
def openapi_document_bytes() -> bytes:
    """The served document, built once per process: it depends on the code alone."""
    return json.dumps(build_openapi_document(), indent=1).encode("utf-8")
