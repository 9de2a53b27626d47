"""From database rows to API responses, and the JSON and Link headers that carry them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from api.keys import SETTINGS
from api.schemas import (
    ChangeReportPending,
    ChangeReportResponse,
    DeploymentResponse,
    EnvironmentResponse,
    FreezeResponse,
    ReleaseCandidateDetailResponse,
    ReleaseCandidateResponse,
    ReleaseResponse,
    ReportCommit,
    ReportEnd,
    ReportPullRequest,
)
from bot.app.changes import Between
from bot.app.environments import EnvironmentState
from bot.app.releases import CandidateWithDeployments, ReleaseWithCandidates
from bot.core.pages import Page, PageRequest
from bot.domain.changes import ChangeReport
from bot.domain.statuses import BuildStatus, DeploymentKind, DeploymentStatus
from bot.storage.models import Deployment, ReleaseCandidate


def deployment_response(deployment: Deployment) -> DeploymentResponse:
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
    )


def candidate_detail_response(found: CandidateWithDeployments) -> ReleaseCandidateDetailResponse:
    return ReleaseCandidateDetailResponse(
        **candidate_response(found.candidate).model_dump(),
        deployments=[deployment_response(d) for d in found.deployments],
    )


def release_response(found: ReleaseWithCandidates) -> ReleaseResponse:
    return ReleaseResponse(
        version=found.release.version,
        created_at=found.release.created_at,
        release_candidates=[candidate_response(c) for c in found.candidates],
    )


def environment_response(state: EnvironmentState) -> EnvironmentResponse:
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
        active_deployment=deployment_response(active) if active else None,
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
