"""Request bodies and responses of the REST API. The OpenAPI document is built from these,
and every response is built through them, so the two cannot drift apart."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from bot.app.audit import Action as AuditAction
from bot.app.audit import Decision as AuditDecision
from bot.config.projects_file import NotificationEvent
from bot.domain.policy import Door
from bot.domain.statuses import BuildStatus, DeploymentKind, DeploymentStatus

MAX_TEXT = 2000


def _no_nul(text: str) -> str:
    # PostgreSQL text cannot hold NUL; refuse it as input rather than fail on storing it.
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    return text


Text = Annotated[str, Field(max_length=MAX_TEXT), AfterValidator(_no_nul)]


def _said(text: str) -> str:
    if not text.strip():
        raise ValueError("must say why (not empty)")
    return text


# A reason a decision requires: recorded in the audit and shown wherever the decision is.
Reason = Annotated[Text, AfterValidator(_said)]


class RequestBody(BaseModel):
    # Strict: "true" is not a boolean and 1 is not a string. Unknown keys are ignored, so
    # clients written for a later version keep working.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class CreateReleaseBody(RequestBody):
    repo: str = Field(description="Repository of the project, `owner/name`.")
    commit: str = Field(description="Full 40-character commit SHA to cut the candidate at.")
    trigger_build_workflow: bool = Field(
        default=False,
        description="Start the project's build workflow; the candidate is `building` until it "
        "finishes. When false the candidate is `ready` at once.",
    )


class CreateDeploymentBody(RequestBody):
    release_candidate_version: str = Field(description="`<release>-rc<N>`, e.g. `v1.4.0-rc2`.")
    force: bool = Field(
        default=False,
        description="Break glass: deploy even though a freeze (manual or calendar) or the "
        "promotion order and soak would refuse it; needs `reason`. A candidate marked bad is "
        "refused all the same, and approvals are still waited for. Audited as `forced`.",
    )
    reason: Text | None = Field(
        default=None, description="Why it is forced: required with `force`, kept in the audit."
    )


class UpdateDeploymentBody(RequestBody):
    release_candidate_version: str = Field(description="`<release>-rc<N>`, e.g. `v1.4.0-rc2`.")
    status: DeploymentStatus
    error_message: Text | None = Field(
        default=None, description="Tarmac extension: why the deployment failed."
    )


class RollbackBody(RequestBody):
    force: bool = Field(default=False, description="Roll back even when the environment is frozen.")
    reason: Text | None = Field(
        default=None,
        description="Why it is forced: kept in the audit; required to override a calendar "
        "freeze (a manual freeze is overridden by `force` alone, as the API always allowed).",
    )


class RejectDeploymentBody(RequestBody):
    reason: Reason = Field(description="Why the deployment is rejected: its `error_message`.")


class MarkBadBody(RequestBody):
    reason: Reason = Field(
        description="Why the candidate must not be deployed: shown wherever it is listed and "
        "in every refusal of it."
    )


UNTIL_OUT_OF_RANGE = "must be a time that exists in UTC (before 10000-01-01T00:00:00Z)"


def _in_utc(value: datetime | None) -> datetime | None:
    """The time in UTC, where Tarmac keeps it; `9999-12-31T23:59:59-14:00` has no UTC time."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise PydanticCustomError("until_out_of_range", UNTIL_OUT_OF_RANGE) from None


class FreezeBody(RequestBody):
    reason: Text | None = None
    until: Annotated[AwareDatetime | None, AfterValidator(_in_utc)] = Field(
        default=None, description="When the freeze ends by itself (ISO 8601 with a time zone)."
    )


class Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class ErrorResponse(Response):
    error: str


class HealthResponse(Response):
    status: str
    # Healthy is exactly {"status": "ok"}; `error` appears only with a 503.
    error: str | None = Field(default=None, exclude_if=lambda error: error is None)


class ReadyResponse(Response):
    status: str = Field(description="`ready`, or `not ready` with the failing checks.")
    checks: dict[str, str] = Field(
        description="database, migrations, database_writes and (with a GitHub App) "
        "outbox_worker: `ok` or what is wrong."
    )


class ApprovalResponse(Response):
    approver: str = Field(description="The actor who approved (the token's actor, or a login).")
    at: datetime
    expires_at: datetime = Field(
        description="When it stops counting; one that expired while the deployment still "
        "waits must be given again."
    )


class DeploymentResponse(Response):
    id: int
    environment_name: str
    release_candidate_version: str
    release_version: str
    from_release_candidate_version: str | None
    from_release_version: str | None
    status: DeploymentStatus
    actor: str | None
    deploy_start_at: datetime
    deploy_end_at: datetime | None
    error_message: str | None
    kind: DeploymentKind = Field(description="Tarmac extension: deploy, rollback or reported.")
    waiting_for: str | None = Field(
        description="Tarmac extension: what its deploy run waits for before it deploys, e.g. "
        "`approval of GitHub environment production (its protection rules)`; null unless a job "
        "of the run is held by its GitHub environment (the deployment is then `pending`), or "
        "`approval (1 of 2)` while it waits for the approvals of its environment's policy."
    )
    approvals_required: int = Field(
        description="Tarmac extension: how many people other than its actor must approve it "
        "before its workflow runs (0: none; rollbacks never wait)."
    )
    approvals: list[ApprovalResponse] = Field(
        description="Tarmac extension: the approvals given so far, oldest first (expired ones "
        "included: see `expires_at`)."
    )


class RejectedResponse(Response):
    reason: str
    by: str | None
    at: datetime


class ReleaseCandidateResponse(Response):
    version: str
    release_version: str
    commit: str
    repo: str
    build_status: BuildStatus
    build_error: str | None = Field(
        description="Tarmac extension: why the build failed (its run did not succeed, it could "
        "not be started, or it timed out); null unless `build_status` is `failed`."
    )
    created_at: datetime
    rejected: RejectedResponse | None = Field(
        description="Tarmac extension: the candidate is marked bad (`POST …/reject`): refused "
        "for every deploy and never a rollback target until cleared; null when it is not."
    )


class ReleaseCandidateDetailResponse(ReleaseCandidateResponse):
    deployments: list[DeploymentResponse]


class ReleaseResponse(Response):
    version: str
    created_at: datetime
    release_candidates: list[ReleaseCandidateResponse]


class FreezeResponse(Response):
    reason: str | None
    by: str | None
    since: datetime
    until: datetime | None


class CalendarFreezeResponse(Response):
    window: str = Field(description="The window's name in the projects file.")
    reason: str
    until: datetime = Field(
        description="When the freeze ends: the end of this window, or of the last window "
        "that overlaps or touches it."
    )


class NextFreezeResponse(Response):
    window: str
    reason: str
    starts_at: datetime
    ends_at: datetime


class PolicyResponse(Response):
    requires: list[str] = Field(
        description="Environments a candidate must succeed in before it comes here."
    )
    soak_minutes: int = Field(description="How long ago that success must have ended.")
    approvals_required: int = Field(description="Approvals a deploy here waits for (0: none).")


class EnvironmentResponse(Response):
    name: str
    production: bool
    url: str | None
    deploy_workflow: str | None
    auto_deploy: bool
    removed: bool = Field(description="The environment left the projects file: history only.")
    running_release_candidate_version: str | None
    running_release_version: str | None
    frozen: bool = Field(
        description="Manually frozen (`freeze`); `calendar_freeze` says whether a calendar "
        "window is in effect. Either refuses deploys."
    )
    freeze: FreezeResponse | None = Field(description="The manual freeze (`PUT …/freeze`).")
    calendar_freeze: CalendarFreezeResponse | None = Field(
        description="Tarmac extension: the calendar window of the projects file in effect now."
    )
    next_freeze: NextFreezeResponse | None = Field(
        description="Tarmac extension: the next calendar window to begin (within 400 days)."
    )
    policy: PolicyResponse = Field(
        description="Tarmac extension: the release policy of the projects file (docs/policy.md)."
    )
    active_deployment: DeploymentResponse | None


def _one_of(values: type[StrEnum]) -> dict[str, Any]:
    return {"enum": [value.value for value in values]}


class AuditEventResponse(Response):
    id: int
    at: datetime
    door: str = Field(description="Through what it came.", json_schema_extra=_one_of(Door))
    actor: str | None
    action: str = Field(json_schema_extra=_one_of(AuditAction))
    decision: str = Field(
        json_schema_extra=_one_of(AuditDecision),
        description="`allowed`, `forced` (allowed only by force: `reason` says why and what it "
        "overrode), `refused` (`reason` is the refusal), `waiting` (allowed, waiting for "
        "approvals), `approved`, `rejected`, `marked` or `cleared` (a bad candidate).",
    )
    environment_name: str | None = Field(description="Null for a candidate's mark.")
    release_candidate_version: str | None
    deployment_id: int | None
    reason: str | None


class ReportEnd(Response):
    release_candidate_version: str
    commit: str


class ReportCommit(Response):
    sha: str
    message: str = Field(description="The first line of the commit message.")
    author: str | None = Field(description="GitHub login, or the git author's name.")
    url: str


class ReportPullRequest(Response):
    number: int
    title: str
    author: str | None = Field(description="GitHub login.")
    url: str
    merged_at: datetime | None


class ChangeReportResponse(Response):
    base: ReportEnd
    head: ReportEnd
    ahead_by: int = Field(
        description="Commits head has that base has not, before the project's `paths:` filter."
    )
    diverged: bool = Field(
        description="Base is not an ancestor of head (history was rewritten, or head is the "
        "older one): `commits` and `pull_requests` are then empty rather than a guess."
    )
    commits: list[ReportCommit] = Field(
        description="Oldest first; with `paths:`, only those that touch them."
    )
    pull_requests: list[ReportPullRequest] = Field(
        description="The merged pull requests the commits belong to, in the order merged."
    )


class ChangeReportPending(Response):
    status: Literal["pending"]
    message: str
    base: ReportEnd
    head: ReportEnd


class WebhookResponse(Response):
    """The answer to a GitHub webhook delivery (GitHub shows it in the App's delivery log)."""

    status: Literal["pong", "accepted", "ignored", "duplicate", "queued"]
    # What the handlers did, as stored on the delivery row; absent for `pong` and `queued`.
    outcome: str | None = Field(default=None, exclude_if=lambda outcome: outcome is None)


# --- what Tarmac sends a generic webhook receiver (the document's `webhooks`) ------------------


class Notified(BaseModel):
    # Exactly these keys: tests/test_notifications.py reads every body it gets through these.
    model_config = ConfigDict(frozen=True, extra="forbid")


class NotifiedDeployment(Notified):
    id: int
    kind: DeploymentKind
    status: DeploymentStatus = Field(description="At the transition.")
    actor: str | None
    error_message: str | None = Field(description="Why it failed, when it did (clipped).")
    workflow_run_url: str | None = Field(description="Its deploy run, once known.")
    environment_url: str | None
    started_at: AwareDatetime
    ended_at: AwareDatetime | None


class NotifiedReleaseCandidate(Notified):
    version: str
    repo: str | None = None
    commit: str | None = None
    tag: str | None = None
    build_status: BuildStatus | None = None
    build_run_url: str | None = None
    build_error: str | None = None


class NotifiedFreeze(Notified):
    reason: str | None
    by: str | None
    since: AwareDatetime
    until: AwareDatetime | None


class NotifiedWindow(Notified):
    """One occurrence of a calendar freeze window (the projects file's `freezes`)."""

    name: str
    reason: str
    timezone: str = Field(description="The IANA time zone of its wall clock.")
    start: AwareDatetime = Field(description="When it opens, in UTC.")
    end: AwareDatetime = Field(
        description="When it closes, in UTC (a window touching it may freeze on after)."
    )
    start_local: AwareDatetime = Field(description="`start` on its wall clock, with the offset.")
    end_local: AwareDatetime = Field(description="`end` on its wall clock, with the offset.")


class NotifiedPullRequest(Notified):
    number: int
    title: str | None = None
    url: str | None = None


class NotificationBody(Notified):
    """The JSON body of every generic webhook delivery: one transition, as it was then."""

    id: str = Field(
        description="The delivery id, the same on every retry (also `X-Tarmac-Delivery`): a "
        "receiver that drops ids it has seen counts each message once."
    )
    event: NotificationEvent
    timestamp: AwareDatetime = Field(
        description="When the transition happened (a window's opening or closing is sent up "
        "to `TARMAC_CALENDAR_SWEEP_SECONDS` later)."
    )
    project: str
    environment: str | None = Field(description="Null for a candidate's build.")
    actor: str | None = Field(description="Who caused it, when known.")
    deployment: NotifiedDeployment | None
    release_candidate: NotifiedReleaseCandidate | None
    freeze: NotifiedFreeze | None = Field(
        description="The manual freeze in effect: set for environment.frozen, and for "
        "deployment.refused while the environment is frozen."
    )
    reason: str | None = Field(
        description="Why the deploy or rollback was refused, as the refusal says it (the API's "
        "`error`): set for deployment.refused."
    )
    window: NotifiedWindow | None = Field(
        description="The calendar window: set for freeze_window.opened and freeze_window.closed."
    )
    pull_requests: list[NotifiedPullRequest] | None = Field(
        description="The pull requests the deployment brings, when known."
    )
