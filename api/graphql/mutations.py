"""The REST API's writes as GraphQL mutations, through the same `bot/app/operations.py`
functions, with the same refusals.

A request's mutations run in one write transaction (api/graphql/view.py) that commits before
the answer leaves, and only if none was refused: after a refusal the rest are not run
(`NOT_RUN`) and the transaction rolls back, as a refused REST request changes nothing. A
refusal of the release policy is still audited, after the rollback.

Every mutation comes through the API's door (`Door.API`); an approval is the token's actor's,
with no GitHub person behind it (bot/domain/approvals.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from api.graphql.context import GraphContext
from api.graphql.errors import InvalidArgument, NotRun
from api.graphql.types import CandidateNode, Context, DeploymentNode, EnvironmentNode
from bot.app import operations
from bot.app.deployments import ReportedStatus
from bot.app.operations import Mirror
from bot.app.releases import CreatedCandidate
from bot.core import errors
from bot.domain.approvals import Approver
from bot.domain.policy import Door
from bot.domain.statuses import DeploymentStatus
from bot.storage.models import Deployment, ReleaseCandidate

T = TypeVar("T")

MAX_REASON = 2000
REASON_NEEDED = "'reason' must say why: 1 to 2000 characters"
REASON_TOO_LONG = "'reason' must be at most 2000 characters"
REASON_HAS_NUL = "'reason' must not contain NUL characters"


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


def _reason(text: str | None, *, needed: bool = False) -> str | None:
    """A reason as REST takes text: at most MAX_REASON characters, no NUL (PostgreSQL cannot
    hold it); one that is `needed` says something."""
    if text is None or not text.strip():
        if needed:
            raise InvalidArgument(REASON_NEEDED)
        return text
    if len(text) > MAX_REASON:
        raise InvalidArgument(REASON_TOO_LONG)
    if "\x00" in text:
        raise InvalidArgument(REASON_HAS_NUL)
    return text


def _needed_reason(text: str) -> str:
    checked = _reason(text, needed=True)
    assert checked is not None
    return checked


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

    @strawberry.mutation(
        description=(
            "POST …/environments/{environment}/deployments, as the release policy allows: "
            "`force` with a `reason` overrides freezes and the promotion order (never a bad "
            "mark or approvals)."
        )
    )
    async def deploy(
        self,
        info: Context,
        project: str,
        environment: str,
        version: str,
        force: bool = False,
        reason: str | None = None,
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
                door=Door.API,
                force=force,
                reason=_reason(reason),
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

    @strawberry.mutation(
        description=(
            "POST …/environments/{environment}/rollback: `force` overrides a manual freeze, "
            "and with a `reason` a calendar freeze too."
        )
    )
    async def roll_back(
        self,
        info: Context,
        project: str,
        environment: str,
        force: bool = False,
        reason: str | None = None,
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
                door=Door.API,
                reason=_reason(reason),
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

    @strawberry.mutation(
        description=(
            "Approve a deployment waiting for approvals, as the token's actor (not the one who "
            "asked for it); the last approval needed runs its workflow."
        )
    )
    async def approve(
        self, info: Context, project: str, environment: str, deployment_id: strawberry.ID
    ) -> DeploymentNode:
        def approve(session: AsyncSession, mirror: Mirror) -> Awaitable[Deployment]:
            return operations.approve(
                session,
                mirror,
                project_name=project,
                environment_name=environment,
                deployment_id=_deployment_id(str(deployment_id)),
                approver=Approver(actor=_actor(info)),
                door=Door.API,
                clock=info.context.service.clock,
            )

        approved = await _run(info, project, approve)
        return DeploymentNode(row=approved)

    @strawberry.mutation(
        description="Reject a deployment waiting for approvals: canceled, with the reason."
    )
    async def reject_deployment(
        self,
        info: Context,
        project: str,
        environment: str,
        deployment_id: strawberry.ID,
        reason: str,
    ) -> DeploymentNode:
        def reject(session: AsyncSession, mirror: Mirror) -> Awaitable[Deployment]:
            return operations.reject_deployment(
                session,
                mirror,
                project_name=project,
                environment_name=environment,
                deployment_id=_deployment_id(str(deployment_id)),
                actor=_actor(info),
                reason=_needed_reason(reason),
                door=Door.API,
                clock=info.context.service.clock,
            )

        rejected = await _run(info, project, reject)
        return DeploymentNode(row=rejected)

    @strawberry.mutation(
        description=(
            "Mark a candidate bad: refused for every deploy and never a rollback target until "
            "cleared. Marking it again changes the reason."
        )
    )
    async def mark_bad(
        self, info: Context, project: str, version: str, reason: str
    ) -> CandidateNode:
        def mark(session: AsyncSession, _: Mirror) -> Awaitable[ReleaseCandidate]:
            return operations.mark_bad(
                session,
                project_name=project,
                version=version,
                actor=_actor(info),
                reason=_needed_reason(reason),
                door=Door.API,
                clock=info.context.service.clock,
            )

        return CandidateNode(row=await _run(info, project, mark))

    @strawberry.mutation(description="Clear a candidate's bad mark (none: nothing changes).")
    async def clear_bad(self, info: Context, project: str, version: str) -> CandidateNode:
        def clear(session: AsyncSession, _: Mirror) -> Awaitable[ReleaseCandidate]:
            return operations.clear_bad(
                session,
                project_name=project,
                version=version,
                actor=_actor(info),
                door=Door.API,
                clock=info.context.service.clock,
            )

        return CandidateNode(row=await _run(info, project, clear))
