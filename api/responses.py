"""From database rows to API responses, and the JSON and Link headers that carry them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from api.keys import SETTINGS
from api.schemas import (
    ApprovalResponse,
    AuditEventResponse,
    CalendarFreezeResponse,
    ChangeReportPending,
    ChangeReportResponse,
    DeploymentResponse,
    EnvironmentResponse,
    FreezeResponse,
    NextFreezeResponse,
    PolicyResponse,
    RejectedResponse,
    ReleaseCandidateDetailResponse,
    ReleaseCandidateResponse,
    ReleaseResponse,
    ReportCommit,
    ReportEnd,
    ReportPullRequest,
)
from bot.app.audit import Listed
from bot.app.changes import Between
from bot.app.environments import EnvironmentState
from bot.app.releases import CandidateWithDeployments, ReleaseWithCandidates
from bot.core.pages import Page, PageRequest
from bot.domain.calendar import Span
from bot.domain.changes import ChangeReport
from bot.domain.policy import EnvironmentPolicy
from bot.domain.statuses import BuildStatus, DeploymentKind, DeploymentStatus
from bot.storage.models import Approval, Deployment, ReleaseCandidate

# The approvals given, by deployment id (bot/app/deployments.py `approvals_given`): read in
# one query per answer, and only for deployments that wait for approvals.
Approvals = Mapping[int, Sequence[Approval]]
NO_APPROVALS: Approvals = {}


def deployment_response(
    deployment: Deployment, approvals: Approvals = NO_APPROVALS
) -> DeploymentResponse:
    """`approvals` must hold the deployment's approvals when it has any: a deployment that
    never waited for approvals has none."""
    candidate = deployment.release_candidate
    previous = deployment.from_release_candidate
    return DeploymentResponse(
        id=deployment.id,
        environment_name=deployment.environment.name,
        release_candidate_version=candidate.version,
        release_version=candidate.release.version,
        from_release_candidate_version=previous.version if previous else None,
        from_release_version=previous.release.version if previous else None,
        status=DeploymentStatus(deployment.status),
        actor=deployment.actor,
        deploy_start_at=deployment.deploy_start_at,
        deploy_end_at=deployment.deploy_end_at,
        error_message=deployment.error_message,
        kind=DeploymentKind(deployment.kind),
        waiting_for=deployment.waiting_for,
        approvals_required=deployment.approvals_required,
        approvals=[
            ApprovalResponse(approver=a.approver, at=a.created_at, expires_at=a.expires_at)
            for a in approvals.get(deployment.id, ())
        ],
    )


def candidate_response(candidate: ReleaseCandidate) -> ReleaseCandidateResponse:
    return ReleaseCandidateResponse(
        version=candidate.version,
        release_version=candidate.release.version,
        commit=candidate.commit_sha,
        repo=candidate.repo,
        build_status=BuildStatus(candidate.build_status),
        build_error=candidate.build_error,
        created_at=candidate.created_at,
        rejected=RejectedResponse(
            reason=candidate.rejected_reason or "",
            by=candidate.rejected_by,
            at=candidate.rejected_at,
        )
        if candidate.rejected_at is not None
        else None,
    )


def candidate_detail_response(
    found: CandidateWithDeployments, approvals: Approvals = NO_APPROVALS
) -> ReleaseCandidateDetailResponse:
    return ReleaseCandidateDetailResponse(
        **dict(candidate_response(found.candidate)),
        deployments=[deployment_response(d, approvals) for d in found.deployments],
    )


def release_response(found: ReleaseWithCandidates) -> ReleaseResponse:
    return ReleaseResponse(
        version=found.release.version,
        created_at=found.release.created_at,
        release_candidates=[candidate_response(c) for c in found.candidates],
    )


def environment_response(
    state: EnvironmentState, approvals: Approvals = NO_APPROVALS
) -> EnvironmentResponse:
    environment, running, freeze, active = (
        state.environment,
        state.running,
        state.freeze,
        state.active,
    )
    return EnvironmentResponse(
        name=environment.name,
        production=environment.production,
        url=environment.url,
        deploy_workflow=environment.deploy_workflow,
        auto_deploy=environment.auto_deploy,
        removed=environment.removed_at is not None,
        running_release_candidate_version=running.version if running else None,
        running_release_version=running.release.version if running else None,
        frozen=freeze is not None,
        freeze=FreezeResponse(
            reason=freeze.reason, by=freeze.by, since=freeze.since, until=freeze.until
        )
        if freeze
        else None,
        calendar_freeze=_calendar_freeze(state.calendar_freeze),
        next_freeze=_next_freeze(state.next_freeze),
        policy=_policy(state.policy),
        active_deployment=deployment_response(active, approvals) if active else None,
    )


def _calendar_freeze(span: Span | None) -> CalendarFreezeResponse | None:
    if span is None:
        return None
    return CalendarFreezeResponse(
        window=span.window.name, reason=span.window.reason, until=span.end
    )


def _next_freeze(span: Span | None) -> NextFreezeResponse | None:
    if span is None:
        return None
    return NextFreezeResponse(
        window=span.window.name, reason=span.window.reason, starts_at=span.start, ends_at=span.end
    )


def _policy(policy: EnvironmentPolicy) -> PolicyResponse:
    return PolicyResponse(
        requires=list(policy.requires),
        soak_minutes=int(policy.soak.total_seconds() // 60),
        approvals_required=policy.approvals.required if policy.approvals else 0,
    )


def audit_event_response(listed: Listed) -> AuditEventResponse:
    event = listed.event
    return AuditEventResponse(
        id=event.id,
        at=event.at,
        door=event.door,
        actor=event.actor,
        action=event.action,
        decision=event.decision,
        environment_name=listed.environment,
        release_candidate_version=listed.version,
        deployment_id=event.deployment_id,
        reason=event.reason,
    )


def change_report_response(between: Between, report: ChangeReport) -> ChangeReportResponse:
    return ChangeReportResponse(
        base=_end(between.base),
        head=_end(between.head),
        ahead_by=report.ahead_by,
        diverged=report.diverged,
        commits=[
            ReportCommit(sha=c.sha, message=c.message, author=c.author, url=c.url)
            for c in report.commits
        ],
        pull_requests=[
            ReportPullRequest(
                number=pr.number,
                title=pr.title,
                author=pr.author,
                url=pr.url,
                merged_at=pr.merged_at,
            )
            for pr in report.pull_requests
        ],
    )


CHANGES_RETRY_AFTER = 2  # seconds
CHANGES_PENDING = "The change report is being fetched from GitHub; ask again after Retry-After"


def change_report_pending(between: Between) -> ChangeReportPending:
    return ChangeReportPending(
        status="pending", message=CHANGES_PENDING, base=_end(between.base), head=_end(between.head)
    )


def _end(candidate: ReleaseCandidate) -> ReportEnd:
    return ReportEnd(release_candidate_version=candidate.version, commit=candidate.commit_sha)


def json_response(body: BaseModel | Sequence[BaseModel] | None, status: int = 200) -> web.Response:
    if body is None:
        return web.Response(status=status)
    if isinstance(body, BaseModel):
        text = body.model_dump_json()
    else:
        text = "[" + ",".join(item.model_dump_json() for item in body) + "]"
    return web.Response(text=text, status=status, content_type="application/json")


def page_response(request: web.Request, page: Page[Any], shown: PageRequest) -> web.Response:
    """A JSON list with a GitHub-style Link header (first, prev, next; no `last`, which would
    need a count of the whole history). The links are under TARMAC_PUBLIC_URL, or relative to
    the request (RFC 8288 allows it): never built from its Host header, which the client
    chooses."""
    response = json_response(page.items)
    public_url = request.app[SETTINGS].public_url or ""
    links = []

    def link(number: int, rel: str) -> None:
        target = request.rel_url.update_query(page=str(number), per_page=str(shown.per_page))
        links.append(f'<{public_url}{target}>; rel="{rel}"')

    if shown.page > 1:
        link(1, "first")
        link(shown.page - 1, "prev")
    if page.has_next:
        link(shown.page + 1, "next")
    if links:
        response.headers["Link"] = ", ".join(links)
    return response
