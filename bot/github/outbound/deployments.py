"""Deployments on GitHub: the GitHub Deployment, the deploy workflow run, statuses, cancels."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import Mirror, record_run_status
from bot.domain.statuses import DeploymentStatus, is_final
from bot.github import endpoints
from bot.github.client import GitHubRefused, GitHubUnavailable
from bot.github.outbound.effects import (
    EffectContext,
    Recorder,
    effect,
    on_refusal,
    preload,
    recording,
)
from bot.github.outbound.workflows import (
    candidate_inputs,
    dispatch_workflow,
    lost_run,
    workflow_inputs,
)
from bot.github.run_marks import deployment_mark
from bot.storage.models import Deployment
from bot.storage.outbox import Action, ClaimedItem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _GitHubIds:
    """What a status or a cancel needs of its deployment: its own columns, not the deployment
    with its environment, project and release candidates joined in."""

    github_deployment_id: int | None
    workflow_run_id: int | None
    workflow_run_url: str | None


@preload(Action.CREATE_GITHUB_DEPLOYMENT, Action.DISPATCH_DEPLOY_WORKFLOW)
async def _preload_deployments(
    session: AsyncSession, items: Sequence[ClaimedItem]
) -> dict[int, object]:
    found = await session.scalars(
        select(Deployment).where(Deployment.id.in_({item.deployment_id for item in items}))
    )
    deployments = {deployment.id: deployment for deployment in found}
    return {
        item.id: deployments[item.deployment_id]
        for item in items
        if item.deployment_id in deployments
    }


@preload(Action.POST_DEPLOYMENT_STATUS, Action.CANCEL_WORKFLOW_RUN)
async def _preload_github_ids(
    session: AsyncSession, items: Sequence[ClaimedItem]
) -> dict[int, object]:
    rows = await session.execute(
        select(
            Deployment.id,
            Deployment.github_deployment_id,
            Deployment.workflow_run_id,
            Deployment.workflow_run_url,
        ).where(Deployment.id.in_({item.deployment_id for item in items}))
    )
    found = {row.id: _GitHubIds(*row[1:]) for row in rows}
    return {item.id: found[item.deployment_id] for item in items if item.deployment_id in found}


async def _load(ctx: EffectContext, item: ClaimedItem) -> Deployment:
    if isinstance(ctx.preloaded, Deployment):
        return ctx.preloaded
    assert item.deployment_id is not None
    async with ctx.db.read() as session:
        deployment = await session.get(Deployment, item.deployment_id)
    assert deployment is not None
    return deployment


async def _load_github_ids(ctx: EffectContext, item: ClaimedItem) -> _GitHubIds:
    if isinstance(ctx.preloaded, _GitHubIds):
        return ctx.preloaded
    async with ctx.db.read() as session:
        found = await _preload_github_ids(session, [item])
    loaded = found[item.id]
    assert isinstance(loaded, _GitHubIds)
    return loaded


def github_payload(deployment: Deployment) -> dict[str, Any]:
    """What Tarmac writes into the GitHub Deployment, and finds it again by."""
    return {
        "tarmac_deployment_id": deployment.id,
        "project": deployment.environment.project.name,
        "release_candidate_version": deployment.release_candidate.version,
        "kind": deployment.kind,
    }


@effect(Action.CREATE_GITHUB_DEPLOYMENT)
async def create_github_deployment(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    deployment = await _load(ctx, item)
    if deployment.github_deployment_id is not None:
        return None
    environment = deployment.environment
    github_id = None
    if item.uncertain:
        github_id = await _find_existing(ctx, item, deployment)
    if github_id is None:
        body = {
            "ref": deployment.release_candidate.commit_sha,
            "task": "deploy",
            "environment": environment.name,
            "production_environment": environment.production,
            "auto_merge": False,
            "required_contexts": [],
            "payload": github_payload(deployment),
            "description": f"{deployment.kind} of {deployment.release_candidate.version}",
        }
        created = await endpoints.create_deployment(
            ctx.client, ctx.installation_id, item.repo, body=body
        )
        if not isinstance(created, dict) or "id" not in created:
            # 202: GitHub merged the default branch instead of deploying; ask again.
            raise GitHubUnavailable("GitHub answered 202 without a deployment")
        github_id = int(created["id"])

    async def record(session: AsyncSession) -> None:
        await session.execute(
            update(Deployment)
            .where(Deployment.id == deployment.id)
            .values(github_deployment_id=github_id)
        )

    return record


async def _find_existing(
    ctx: EffectContext, item: ClaimedItem, deployment: Deployment
) -> int | None:
    """After an attempt whose answer was lost: the GitHub Deployment it may have created."""
    found = await endpoints.list_deployments(
        ctx.client,
        ctx.installation_id,
        item.repo,
        sha=deployment.release_candidate.commit_sha,
        environment=deployment.environment.name,
    )
    for candidate in found or []:
        payload = candidate.get("payload")
        if isinstance(payload, dict) and payload.get("tarmac_deployment_id") == deployment.id:
            log.info("deployment %d: found GitHub deployment %s", deployment.id, candidate["id"])
            return int(candidate["id"])
    return None


@effect(Action.DISPATCH_DEPLOY_WORKFLOW)
async def dispatch_deploy_workflow(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    deployment = await _load(ctx, item)
    environment = deployment.environment
    if deployment.workflow_run_id is not None or environment.deploy_workflow is None:
        return None
    if is_final(deployment.status):
        return None  # canceled (or timed out) before its run was asked for
    what = f"deployment {deployment.id}"
    workflow = environment.deploy_workflow
    run = await lost_run(ctx, item, workflow, deployment_mark(deployment.id), what)
    if run is None:
        candidate = deployment.release_candidate
        ref = candidate.tag or await ctx.client.default_branch(item.repo, ctx.installation_id)
        own = {
            "tarmac_deployment_id": str(deployment.id),
            "tarmac_environment": environment.name,
            **candidate_inputs(candidate),
        }
        inputs = workflow_inputs(own, environment.deploy_inputs, what)
        run = await dispatch_workflow(ctx, item, workflow, ref, inputs, what)
    return recording(
        update(Deployment)
        .where(Deployment.id == deployment.id)
        .values(workflow_run_id=run.run_id, workflow_run_url=run.run_url)
    )


@on_refusal(Action.DISPATCH_DEPLOY_WORKFLOW)
async def deploy_workflow_refused(
    session: AsyncSession, mirror: Mirror, item: ClaimedItem, reason: str, now: datetime
) -> None:
    """No run will come: the deployment ends in `error`, with GitHub's reason."""
    deployment = await session.get(Deployment, item.deployment_id)
    if deployment is None or is_final(deployment.status):
        return
    deployment.error_message = f"Deploy workflow could not be started: {reason}"[:2000]
    await record_run_status(
        session, mirror, deployment, DeploymentStatus.ERROR, run_url=None, now=now
    )


@effect(Action.POST_DEPLOYMENT_STATUS)
async def post_deployment_status(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    deployment = await _load_github_ids(ctx, item)
    if deployment.github_deployment_id is None:
        return None  # its GitHub Deployment was refused; the refusal is on the deployment
    github_id = deployment.github_deployment_id
    body: dict[str, Any] = {
        "state": item.payload["state"],
        "description": item.payload["description"],
    }
    if deployment.workflow_run_url:
        body["log_url"] = deployment.workflow_run_url
    if item.payload.get("environment_url"):
        body["environment_url"] = item.payload["environment_url"]
    if item.uncertain and await _status_already_posted(ctx, item.repo, github_id, body):
        return None
    await endpoints.create_deployment_status(
        ctx.client, ctx.installation_id, item.repo, deployment_id=github_id, body=body
    )
    return None


async def _status_already_posted(
    ctx: EffectContext, repo: str, github_id: int, body: dict[str, Any]
) -> bool:
    statuses = await endpoints.list_deployment_statuses(
        ctx.client, ctx.installation_id, repo, deployment_id=github_id
    )
    newest = statuses[0] if statuses else None
    return bool(
        newest
        and newest.get("state") == body["state"]
        and newest.get("description") == body["description"]
    )


@effect(Action.CANCEL_WORKFLOW_RUN)
async def cancel_workflow_run(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    deployment = await _load_github_ids(ctx, item)
    if deployment.workflow_run_id is None:
        return None
    try:
        await endpoints.cancel_workflow_run(
            ctx.client, ctx.installation_id, item.repo, run_id=deployment.workflow_run_id
        )
    except GitHubRefused as exc:
        if exc.status != 409:  # 409: the run had finished already
            raise
    return None
