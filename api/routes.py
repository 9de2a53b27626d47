"""The REST routes: each handler reads the request, calls one domain function, answers.

A handler builds its answer inside the transaction but returns it only after the commit, so a
2xx always means the change is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypedDict, TypeVar

from aiohttp import web
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from api.idempotency import changing, committed
from api.keys import IDENTITY, OPENAPI_DOCUMENT, SERVICE
from api.requests import read_body, read_page
from api.responses import (
    CHANGES_RETRY_AFTER,
    audit_event_response,
    candidate_detail_response,
    candidate_response,
    change_report_pending,
    change_report_response,
    deployment_response,
    environment_response,
    json_response,
    page_response,
    release_response,
)
from api.schemas import (
    CreateDeploymentBody,
    CreateReleaseBody,
    DeploymentResponse,
    EnvironmentResponse,
    FreezeBody,
    HealthResponse,
    MarkBadBody,
    ReadyResponse,
    RejectDeploymentBody,
    RollbackBody,
    UpdateDeploymentBody,
)
from bot.app import audit, changes, deployments, operations, releases
from bot.app.environments import describe_environment, describe_environments
from bot.app.operations import Mirror
from bot.core.clock import Clock
from bot.domain.approvals import Approver
from bot.domain.policy import Door
from bot.service import Service
from bot.storage.models import Deployment

HEALTH_TIMEOUT_SECONDS = 2.0
T = TypeVar("T")

routes = web.RouteTableDef()
PROJECT = "/api/releases/{project}"
ENVIRONMENT = PROJECT + "/environments/{environment}"
# Ids are 64-bit: more digits than that cannot name a deployment (404, not a database error).
DEPLOYMENT = ENVIRONMENT + "/deployments/{deployment_id:[0-9]{1,18}}"
CANDIDATE = PROJECT + "/releases/{version}"


def _service(request: web.Request) -> Service:
    return request.app[SERVICE]


def _actor(request: web.Request) -> str:
    return request[IDENTITY].actor


class EnvironmentChange(TypedDict):
    project_name: str
    environment_name: str
    actor: str
    clock: Clock


class DeploymentChange(EnvironmentChange):
    deployment_id: int
    door: Door


def _as_is(answer: BaseModel) -> BaseModel:
    return answer


async def _deployment_answer(session: AsyncSession, deployment: Deployment) -> DeploymentResponse:
    """The deployment with the approvals given so far (read only if it waits for any)."""
    approvals = await deployments.approvals_given(session, [deployment])
    return deployment_response(deployment, approvals)


def _in_environment(request: web.Request) -> EnvironmentChange:
    """What every change to an environment is told: where, by whom, and the service's clock."""
    return EnvironmentChange(
        project_name=request.match_info["project"],
        environment_name=request.match_info["environment"],
        actor=_actor(request),
        clock=_service(request).clock,
    )


@routes.post(CANDIDATE)
async def create_release(request: web.Request) -> web.Response:
    body = await read_body(request, CreateReleaseBody)
    clock = _service(request).clock

    def create(session: AsyncSession, mirror: Mirror) -> Awaitable[releases.CreatedCandidate]:
        # The time is read inside the write transaction, as the deployment use cases do.
        return operations.create_release_candidate(
            session,
            mirror,
            project_name=request.match_info["project"],
            version=request.match_info["version"],
            repo=body.repo,
            commit=body.commit,
            build=body.trigger_build_workflow,
            now=clock(),
        )

    return await committed(
        request, create, lambda created: candidate_response(created.candidate), status=201
    )


@routes.get(PROJECT + "/releases")
async def list_releases(request: web.Request) -> web.Response:
    shown = read_page(request)
    async with _service(request).db.read() as session:
        found = await releases.list_releases(session, request.match_info["project"], shown)
        answers = found.map(release_response)
    return page_response(request, answers, shown)


@routes.get(CANDIDATE)
async def get_release_candidate(request: web.Request) -> web.Response:
    async with _service(request).db.read() as session:
        found = await releases.get_release_candidate(
            session, request.match_info["project"], request.match_info["version"]
        )
        approvals = await deployments.approvals_given(session, found.deployments)
        answer = candidate_detail_response(found, approvals)
    return json_response(answer)


@routes.post(CANDIDATE + "/reject")
async def mark_bad(request: web.Request) -> web.Response:
    body = await read_body(request, MarkBadBody)
    mark = partial(
        operations.mark_bad,
        project_name=request.match_info["project"],
        version=request.match_info["version"],
        actor=_actor(request),
        reason=body.reason,
        door=Door.API,
        clock=_service(request).clock,
    )
    return await committed(request, _without_mirror(mark), candidate_response)


@routes.delete(CANDIDATE + "/reject")
async def clear_bad(request: web.Request) -> web.Response:
    clear = partial(
        operations.clear_bad,
        project_name=request.match_info["project"],
        version=request.match_info["version"],
        actor=_actor(request),
        door=Door.API,
        clock=_service(request).clock,
    )
    return await committed(request, _without_mirror(clear), candidate_response)


def _without_mirror(
    use_case: Callable[[AsyncSession], Awaitable[T]],
) -> Callable[[AsyncSession, Mirror], Awaitable[T]]:
    """A use case that tells GitHub nothing, in `committed`'s shape."""
    return lambda session, _mirror: use_case(session)


@routes.get(PROJECT + "/audit")
async def list_audit(request: web.Request) -> web.Response:
    shown = read_page(request)
    async with _service(request).db.read() as session:
        found = await audit.audit_listing(
            session, request.match_info["project"], request.query.get("environment"), shown
        )
        answers = found.map(audit_event_response)
    return page_response(request, answers, shown)


@routes.get(CANDIDATE + "/changes")
async def get_changes(request: web.Request) -> web.Response:
    service = _service(request)
    answer = await changes.change_report(
        service.db,
        service.mirror,
        project_name=request.match_info["project"],
        version=request.match_info["version"],
        since=request.query.get("since"),
        environment_name=request.query.get("environment"),
        clock=service.clock,
        wait=service.settings.change_report_wait_seconds,
    )
    if answer.report is None:
        response = json_response(change_report_pending(answer.between), status=202)
        response.headers["Retry-After"] = str(CHANGES_RETRY_AFTER)
        return response
    return json_response(change_report_response(answer.between, answer.report))


@routes.post(ENVIRONMENT + "/deployments")
async def create_deployment(request: web.Request) -> web.Response:
    body = await read_body(request, CreateDeploymentBody)
    deploy = partial(
        operations.deploy,
        **_in_environment(request),
        version=body.release_candidate_version,
        door=Door.API,
        force=body.force,
        reason=body.reason,
    )
    # A new deployment has no approvals yet.
    return await committed(request, deploy, deployment_response, status=201)


@routes.patch(ENVIRONMENT + "/deployments")
async def update_deployment_status(request: web.Request) -> web.Response:
    body = await read_body(request, UpdateDeploymentBody)

    async def report(session: AsyncSession, mirror: Mirror) -> DeploymentResponse:
        reported = await operations.report_status(
            session,
            mirror,
            **_in_environment(request),
            version=body.release_candidate_version,
            status=body.status,
            error_message=body.error_message,
        )
        return await _deployment_answer(session, reported.deployment)

    return await committed(request, report, _as_is)


@routes.get(ENVIRONMENT + "/deployments")
async def list_deployments(request: web.Request) -> web.Response:
    shown = read_page(request)
    async with _service(request).db.read() as session:
        found = await deployments.list_deployments(
            session, request.match_info["project"], request.match_info["environment"], shown
        )
        approvals = await deployments.approvals_given(session, found.items)
        answers = found.map(lambda deployment: deployment_response(deployment, approvals))
    return page_response(request, answers, shown)


@routes.get(DEPLOYMENT)
async def get_deployment(request: web.Request) -> web.Response:
    async with _service(request).db.read() as session:
        found = await deployments.get_deployment(
            session,
            request.match_info["project"],
            request.match_info["environment"],
            int(request.match_info["deployment_id"]),
        )
        answer = await _deployment_answer(session, found)
    return json_response(answer)


@routes.post(DEPLOYMENT + "/approve")
async def approve_deployment(request: web.Request) -> web.Response:
    """The token's actor approves; an API token has no GitHub role or team behind it, so it
    counts only where the environment's `approvals.from` names nobody."""
    change = _on_deployment(request)

    async def approve(session: AsyncSession, mirror: Mirror) -> DeploymentResponse:
        approved = await operations.approve(
            session,
            mirror,
            project_name=change["project_name"],
            environment_name=change["environment_name"],
            deployment_id=change["deployment_id"],
            approver=Approver(actor=change["actor"]),
            door=change["door"],
            clock=change["clock"],
        )
        return await _deployment_answer(session, approved)

    return await committed(request, approve, _as_is)


@routes.post(DEPLOYMENT + "/reject")
async def reject_deployment(request: web.Request) -> web.Response:
    body = await read_body(request, RejectDeploymentBody)

    async def reject(session: AsyncSession, mirror: Mirror) -> DeploymentResponse:
        rejected = await operations.reject_deployment(
            session, mirror, **_on_deployment(request), reason=body.reason
        )
        return await _deployment_answer(session, rejected)

    return await committed(request, reject, _as_is)


def _on_deployment(request: web.Request) -> DeploymentChange:
    return DeploymentChange(
        **_in_environment(request),
        deployment_id=int(request.match_info["deployment_id"]),
        door=Door.API,
    )


@routes.post(DEPLOYMENT + "/cancel")
async def cancel_deployment(request: web.Request) -> web.Response:
    async def cancel(session: AsyncSession, mirror: Mirror) -> DeploymentResponse:
        canceled = await operations.cancel(
            session,
            mirror,
            **_in_environment(request),
            deployment_id=int(request.match_info["deployment_id"]),
        )
        return await _deployment_answer(session, canceled)

    return await committed(request, cancel, _as_is)


@routes.post(ENVIRONMENT + "/rollback")
async def roll_back(request: web.Request) -> web.Response:
    body = await read_body(request, RollbackBody, optional=True)
    roll_back = partial(
        operations.roll_back,
        **_in_environment(request),
        force=body.force,
        door=Door.API,
        reason=body.reason,
    )
    return await committed(
        request, roll_back, lambda done: deployment_response(done.deployment), status=201
    )


@routes.get(PROJECT + "/environments")
async def list_environments(request: web.Request) -> web.Response:
    service = _service(request)
    async with service.db.read() as session:
        described = await describe_environments(
            session, request.match_info["project"], service.clock()
        )
        approvals = await deployments.approvals_given(session, [s.active for s in described])
        answers = [environment_response(state, approvals) for state in described]
    return json_response(answers)


@routes.put(ENVIRONMENT + "/freeze")
async def freeze(request: web.Request) -> web.Response:
    body = await read_body(request, FreezeBody, optional=True)
    async with changing(request) as change:
        frozen = await operations.freeze(
            change.session,
            project_name=request.match_info["project"],
            environment_name=request.match_info["environment"],
            actor=_actor(request),
            reason=body.reason,
            until=body.until,
            clock=_service(request).clock,
        )
        change.answer(await _environment_answer(change.session, frozen))
    return change.response


@routes.delete(ENVIRONMENT + "/freeze")
async def unfreeze(request: web.Request) -> web.Response:
    async with changing(request) as change:
        unfrozen = await operations.unfreeze(
            change.session,
            project_name=request.match_info["project"],
            environment_name=request.match_info["environment"],
            clock=_service(request).clock,
            actor=_actor(request),
        )
        change.answer(await _environment_answer(change.session, unfrozen))
    return change.response


async def _environment_answer(
    session: AsyncSession, changed: operations.FreezeChange
) -> EnvironmentResponse:
    """The environment as it is after the change, at the moment the change was made."""
    state = await describe_environment(session, changed.environment, changed.now)
    return environment_response(state, await deployments.approvals_given(session, [state.active]))


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    try:
        await asyncio.wait_for(_service(request).db.ping(), HEALTH_TIMEOUT_SECONDS)
    except (TimeoutError, OSError, SQLAlchemyError):
        return json_response(
            HealthResponse(status="unavailable", error="Database unavailable"), status=503
        )
    return json_response(HealthResponse(status="ok"))


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    checks = await _service(request).readiness()
    ready = all(value == "ok" for value in checks.values())
    answer = ReadyResponse(status="ready" if ready else "not ready", checks=checks)
    return json_response(answer, status=200 if ready else 503)


@routes.get("/api/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type="application/json")
