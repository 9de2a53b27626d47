"""The REST API's writes as GraphQL mutations, through the same `bot/app/operations.py`
functions, with the same refusals.

A request's mutations run in one write transaction (api/graphql/view.py) that commits before
the answer leaves, and only if none was refused: after a refusal the rest are not run
(`NOT_RUN`) and the transaction rolls back, as a refused REST request changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from api.graphql.context import GraphContext
from api.graphql.errors import NotRun
from api.graphql.types import CandidateNode, Context, DeploymentNode, EnvironmentNode
from bot.app import operations
from bot.app.deployments import ReportedStatus
from bot.app.operations import Mirror
from bot.app.releases import CreatedCandidate
from bot.core import errors
from bot.domain.statuses import DeploymentStatus
from bot.storage.models import Deployment

T = TypeVar("T")


async def _run(
    info: Context,
    project: str,
    use_case: Callable[[AsyncSession, Mirror], Awaitable[T]],
) -> T:
    """One use case in the request's transaction. A project outside the token's scope is not
    found, exactly as an unknown one."""
    context: GraphContext = info.context
    if context.failed is not None:
        raise NotRun()
    try:
        if not context.in_scope(project):
            raise errors.not_found(errors.PROJECT_NOT_FOUND)
        return await context.read(lambda session: use_case(session, context.service.mirror))
    except Exception as failed:
        context.failed = failed
        raise


def _actor(info: Context) -> str:
    context: GraphContext = info.context
    return context.identity.actor


def _deployment_id(text: str) -> int:
    # Ids are 64-bit: anything else names no deployment (as REST's route pattern says).
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise errors.not_found(errors.DEPLOYMENT_NOT_FOUND)
    return int(text)


@strawberry.type
class Mutation:
    @strawberry.mutation(description="POST …/releases/{version}: a new release candidate.")
    async def create_release_candidate(
        self,
        info: Context,
        project: str,
        version: str,
        repo: str,
        commit: str,
        trigger_build_workflow: bool = False,
    ) -> CandidateNode:
        clock = info.context.service.clock

        def create(session: AsyncSession, mirror: Mirror) -> Awaitable[CreatedCandidate]:
            return operations.create_release_candidate(
                session,
                mirror,
                project_name=project,
                version=version,
                repo=repo,
                commit=commit,
                build=trigger_build_workflow,
                now=clock(),
            )

        created = await _run(info, project, create)
        return CandidateNode(row=created.candidate)

    @strawberry.mutation(description="POST …/environments/{environment}/deployments.")
    async def deploy(
        self, info: Context, project: str, environment: str, version: str
    ) -> DeploymentNode:
        def deploy(session: AsyncSession, mirror: Mirror) -> Awaitable[Deployment]:
            return operations.deploy(
                session,
                mirror,
                project_name=project,
                environment_name=environment,
                version=version,
                actor=_actor(info),
                clock=info.context.service.clock,
            )

        deployed = await _run(info, project, deploy)
        return DeploymentNode(row=deployed)

    @strawberry.mutation(description="PATCH …/environments/{environment}/deployments.")
    async def report_status(
        self,
        info: Context,
        project: str,
        environment: str,
        version: str,
        status: DeploymentStatus,
        error_message: str | None = None,
    ) -> DeploymentNode:
        def report(session: AsyncSession, mirror: Mirror) -> Awaitable[ReportedStatus]:
            return operations.report_status(
                session,
                mirror,
                project_name=project,
                environment_name=environment,
                version=version,
                status=status,
                error_message=error_message,
                actor=_actor(info),
                clock=info.context.service.clock,
            )

        reported = await _run(info, project, report)
        return DeploymentNode(row=reported.deployment)

    @strawberry.mutation(description="POST …/environments/{environment}/rollback.")
    async def roll_back(
        self, info: Context, project: str, environment: str, force: bool = False
    ) -> DeploymentNode:
        def roll_back(session: AsyncSession, mirror: Mirror) -> Awaitable[operations.Rollback]:
            return operations.roll_back(
                session,
                mirror,
                project_name=project,
                environment_name=environment,
                actor=_actor(info),
                force=force,
                clock=info.context.service.clock,
            )

        done = await _run(info, project, roll_back)
        return DeploymentNode(row=done.deployment)

    @strawberry.mutation(description="POST …/deployments/{id}/cancel.")
    async def cancel_deployment(
        self, info: Context, project: str, environment: str, id: strawberry.ID
    ) -> DeploymentNode:
        def cancel(session: AsyncSession, mirror: Mirror) -> Awaitable[Deployment]:
            return operations.cancel(
                session,
                mirror,
                project_name=project,
                environment_name=environment,
                deployment_id=_deployment_id(str(id)),
                actor=_actor(info),
                clock=info.context.service.clock,
            )

        canceled = await _run(info, project, cancel)
        return DeploymentNode(row=canceled)

    @strawberry.mutation(description="PUT …/environments/{environment}/freeze.")
    async def freeze(
        self,
        info: Context,
        project: str,
        environment: str,
        reason: str | None = None,
        until: datetime | None = None,
    ) -> EnvironmentNode:
        def freeze(session: AsyncSession, _: Mirror) -> Awaitable[operations.FreezeChange]:
            return operations.freeze(
                session,
                project_name=project,
                environment_name=environment,
                actor=_actor(info),
                reason=reason,
                until=until,
                clock=info.context.service.clock,
            )

        changed = await _run(info, project, freeze)
        return EnvironmentNode(row=changed.environment, now=changed.now)

    @strawberry.mutation(description="DELETE …/environments/{environment}/freeze.")
    async def unfreeze(self, info: Context, project: str, environment: str) -> EnvironmentNode:
        def unfreeze(session: AsyncSession, _: Mirror) -> Awaitable[operations.FreezeChange]:
            return operations.unfreeze(
                session,
                project_name=project,
                environment_name=environment,
                actor=_actor(info),
                clock=info.context.service.clock,
            )

        changed = await _run(info, project, unfreeze)
        return EnvironmentNode(row=changed.environment, now=changed.now)
