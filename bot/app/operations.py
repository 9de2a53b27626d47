"""What a person, a pipeline or a GitHub event asks Tarmac to do. Each use case loads what a
decision needs (bot/storage), decides (bot/domain), writes, and enqueues the GitHub calls its
change implies, in the same transaction.

Every adapter (REST routes, webhook handlers, PR commands, the timeout sweeper) goes through
these functions, so no path can change a deployment without mirroring it on GitHub.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import audit, notifications, protection_answers, releases
from bot.app import policy as release_policy
from bot.app.deployments import ReportedStatus, lock_environment, record_deployment
from bot.config.projects_file import GITHUB_DEPLOYMENT_WORKFLOW
from bot.core import errors
from bot.core.clock import Clock
from bot.domain.approvals import (
    ApprovalRule,
    Approver,
    approval_refusal,
    counted_approvers,
    person,
    waiting_text,
)
from bot.domain.candidates import build_result, ensure_deployable, ensure_rc_version
from bot.domain.environments import auto_deploy_targets, ensure_accepts_deployments
from bot.domain.freeze import (
    current_freeze,
    freeze_environment,
    unfreeze_environment,
)
from bot.domain.policy import Ask, Door, candidate_rejection
from bot.domain.protection_rule import APPROVED_DECIDED_COMMENT, described, refused_message
from bot.domain.rollback import (
    CANCELED_BY_ROLLBACK,
    ensure_may_roll_back,
    ensure_target,
    rolled_away_from,
    target_search,
    to_remember,
)
from bot.domain.statuses import (
    BuildStatus,
    DeploymentKind,
    DeploymentStatus,
    apply_report,
    cancel_changes,
    canceled_by,
    ensure_something_to_cancel,
    expire,
    follow_run,
    report_starts_new_deployment,
    stuck_before,
)
from bot.domain.statuses import cancel as cancel_deployment
from bot.storage import deployments as stored
from bot.storage import policy as stored_policy
from bot.storage.batch_reads import BatchReads
from bot.storage.environments import auto_deploy_environments, takes_auto_deploy_anywhere
from bot.storage.models import Deployment, Environment, Project, ReleaseCandidate
from bot.storage.outbox import (
    Action,
    deployment_key,
    enqueue,
    release_candidate_key,
    shipped_key,
)
from bot.storage.projects import find_project
from bot.storage.releases import find_release_candidate

AUTO_DEPLOY_ACTOR = "tarmac (auto-deploy)"
MAX_DESCRIPTION = 140

# GitHub deployment states for Tarmac statuses; `unknown` posts nothing.
GITHUB_STATES = {
    DeploymentStatus.PENDING: "pending",
    DeploymentStatus.IN_PROGRESS: "in_progress",
    DeploymentStatus.CANCELING: "in_progress",
    DeploymentStatus.SUCCESS: "success",
    DeploymentStatus.FAILURE: "failure",
    DeploymentStatus.CANCELED: "inactive",
    DeploymentStatus.ERROR: "error",
}


@dataclass(frozen=True)
class Mirror:
    """Whether changes are mirrored to GitHub: only when a GitHub App is configured."""

    enabled: bool


# --- what the outbox is told ------------------------------------------------------------


def status_description(deployment: Deployment) -> str:
    verb = {
        DeploymentKind.DEPLOY: "Deploy",
        DeploymentKind.ROLLBACK: "Rollback",
        DeploymentKind.REPORTED: "Reported deploy",
    }.get(DeploymentKind(deployment.kind), "Deploy")
    text = f"{verb} of {deployment.release_candidate.version}: {deployment.status}"
    if deployment.actor:
        text += f" (by {deployment.actor})"
    if deployment.error_message and deployment.status in (
        DeploymentStatus.FAILURE,
        DeploymentStatus.ERROR,
    ):
        text += f" - {deployment.error_message}"
    if len(text) > MAX_DESCRIPTION:
        text = text[: MAX_DESCRIPTION - 1] + "…"
    return text


async def enqueue_for_deployment(
    session: AsyncSession,
    *,
    action: Action,
    deployment: Deployment,
    now: datetime,
    payload: dict[str, Any] | None = None,
) -> None:
    """A GitHub call about one deployment, under its ordering key, so that the calls about
    it reach GitHub in order."""
    await enqueue(
        session,
        action=action,
        ordering_key=deployment_key(deployment.id),
        repo=deployment.environment.project.repo,
        deployment_id=deployment.id,
        payload=payload,
        now=now,
    )


async def plan_new_deployment(
    session: AsyncSession, mirror: Mirror, deployment: Deployment, now: datetime
) -> None:
    """A GitHub Deployment for it, the deploy workflow for deploys and rollbacks, and its
    first status.

    When the environment's deploy workflow makes the GitHub Deployment (`github_deployment:
    workflow`), only the workflow is dispatched: the `deployment` event brings its id."""
    environment = deployment.environment
    runs_workflow = deployment.kind in (DeploymentKind.DEPLOY, DeploymentKind.ROLLBACK)
    deployment.github_deployment_by_actions = (
        runs_workflow
        and environment.deploy_workflow is not None
        and environment.github_deployment == GITHUB_DEPLOYMENT_WORKFLOW
    )
    await notifications.deployment_recorded(session, deployment, now)
    if mirror.enabled and not deployment.github_deployment_by_actions:
        await enqueue_for_deployment(
            session, action=Action.CREATE_GITHUB_DEPLOYMENT, deployment=deployment, now=now
        )
    if runs_workflow and not awaits_approval(deployment):
        await plan_dispatch(session, mirror, deployment, now)
    await plan_status(session, mirror, deployment, now)


async def plan_dispatch(
    session: AsyncSession, mirror: Mirror, deployment: Deployment, now: datetime
) -> None:
    """The environment's deploy workflow for a deploy or rollback: when it is made, or once
    its last approval came."""
    if mirror.enabled and deployment.environment.deploy_workflow is not None:
        await enqueue_for_deployment(
            session, action=Action.DISPATCH_DEPLOY_WORKFLOW, deployment=deployment, now=now
        )


def awaits_approval(deployment: Deployment) -> bool:
    """Whether the deployment still waits for approvals before its workflow runs."""
    return (
        deployment.approvals_required > 0
        and deployment.approved_at is None
        and deployment.status == DeploymentStatus.PENDING
    )


async def plan_status(
    session: AsyncSession, mirror: Mirror, deployment: Deployment, now: datetime
) -> None:
    """The GitHub deployment status for the deployment's status now; none for a GitHub
    Deployment that Actions made, whose statuses Actions alone posts. Called at every status
    change, with or without a GitHub App: the notifications of an end, and what a success
    shipped, are planned here too."""
    await notifications.deployment_status_changed(session, deployment, now)
    await plan_shipped(session, mirror, deployment, now)
    if not mirror.enabled or deployment.github_deployment_by_actions:
        return
    state = GITHUB_STATES.get(DeploymentStatus(deployment.status))
    if state is None:
        return
    await enqueue_for_deployment(
        session,
        action=Action.POST_DEPLOYMENT_STATUS,
        deployment=deployment,
        payload={
            "state": state,
            "description": status_description(deployment),
            "environment_url": deployment.environment.url,
        },
        now=now,
    )


async def plan_shipped(
    session: AsyncSession, mirror: Mirror, deployment: Deployment, now: datetime
) -> None:
    """A deployment succeeded: the pull requests it moved are told, and a first production
    success publishes its GitHub Release (bot/github/outbound/shipped.py decides what of it
    the project's switches want). In order per environment."""
    if not mirror.enabled or deployment.status != DeploymentStatus.SUCCESS:
        return
    await enqueue(
        session,
        action=Action.ANNOUNCE_SHIPPED,
        ordering_key=shipped_key(deployment.environment_id),
        repo=deployment.environment.project.repo,
        deployment_id=deployment.id,
        now=now,
    )


async def plan_canceled(
    session: AsyncSession, mirror: Mirror, canceled: Sequence[Deployment], now: datetime
) -> None:
    """Deployments just canceled (by a rollback, a newer deployment or a person): their runs
    canceled on GitHub, their GitHub deployments shown inactive."""
    for deployment in canceled:
        if mirror.enabled:
            await enqueue_for_deployment(
                session, action=Action.CANCEL_WORKFLOW_RUN, deployment=deployment, now=now
            )
        await plan_status(session, mirror, deployment, now)


async def plan_started(
    session: AsyncSession, mirror: Mirror, deployment: Deployment, superseded: Sequence[Deployment]
) -> None:
    """A deployment just made: what it superseded canceled on GitHub, then itself mirrored."""
    now = deployment.updated_at  # the time of the decision, under the environment's lock
    await plan_canceled(session, mirror, superseded, now)
    await plan_new_deployment(session, mirror, deployment, now)


async def plan_build(
    session: AsyncSession,
    mirror: Mirror,
    candidate: ReleaseCandidate,
    ref: str | None,
    now: datetime,
) -> None:
    """Dispatch the project's build workflow for a `building` RC (ref None: default branch)."""
    if not mirror.enabled:
        return
    await enqueue(
        session,
        action=Action.DISPATCH_BUILD_WORKFLOW,
        ordering_key=release_candidate_key(candidate.id),
        repo=candidate.repo,
        release_candidate_id=candidate.id,
        payload={"ref": ref},
        now=now,
    )


# --- operations -------------------------------------------------------------------------


async def deploy(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    environment_name: str,
    version: str,
    actor: str | None,
    clock: Clock,
    door: Door = Door.API,
    force: bool = False,
    reason: str | None = None,
) -> Deployment:
    """Deploy RC `version` to the environment, as the release policy allows
    (bot/app/policy.py; `force` with a `reason` overrides what it may): a new `pending`
    deployment, which supersedes the environment's older active ones and waits for the
    approvals the environment needs; it also resumes auto-deploy paused by a rollback."""
    locked = await lock_environment(session, project_name, environment_name, clock)
    environment = locked.environment
    ensure_rc_version(version)
    ensure_accepts_deployments(environment)
    candidate = await find_release_candidate(session, environment.project, version)
    ensure_deployable(candidate)
    ask = Ask(actor=actor, door=door, force=force, reason=reason)
    admitted = await release_policy.admit(session, environment, candidate, ask, locked.now)
    new = await record_deployment(session, environment, candidate, actor=actor, now=locked.now)
    wait_for_approvals(new.deployment, admitted.decision.approvals_required)
    environment.auto_deploy_paused_at = None
    await plan_started(session, mirror, new.deployment, new.superseded)
    await release_policy.record_admitted(session, admitted, new.deployment, locked.now)
    return new.deployment


def wait_for_approvals(deployment: Deployment, required: int) -> None:
    if required:
        deployment.approvals_required = required
        deployment.waiting_for = waiting_text(0, required)


async def report_status(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    environment_name: str,
    version: str,
    status: DeploymentStatus,
    actor: str | None,
    clock: Clock,
    error_message: str | None = None,
) -> ReportedStatus:
    """A status reported by a CD system: updates the newest deployment of the RC in the
    environment, or records a new one (`report_starts_new_deployment` says which); mirrored,
    it never dispatches a workflow.

    Freezes do not apply: a report describes what already happened.
    """
    locked = await lock_environment(session, project_name, environment_name, clock)
    environment, now = locked.environment, locked.now
    ensure_rc_version(version)
    candidate = await find_release_candidate(session, environment.project, version)
    current = await stored.newest_deployment_of(session, environment, candidate)
    if current is None or report_starts_new_deployment(current, status):
        ensure_accepts_deployments(environment)
        new = await record_deployment(
            session,
            environment,
            candidate,
            kind=DeploymentKind.REPORTED,
            status=status,
            actor=actor,
            now=now,
            error_message=error_message,
        )
        await plan_started(session, mirror, new.deployment, new.superseded)
        return ReportedStatus(
            new.deployment, created=True, previous_status=None, superseded=new.superseded
        )
    reported = ReportedStatus(current, created=False, previous_status=current.status)
    apply_report(current, status, error_message, now)
    await session.flush()
    if reported.changed:
        await plan_status(session, mirror, current, now)
    return reported


@dataclass(frozen=True)
class Rollback:
    deployment: Deployment
    canceled: list[Deployment]
    rolled_back_from: ReleaseCandidate


async def roll_back(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    environment_name: str,
    actor: str | None,
    force: bool,
    clock: Clock,
    door: Door = Door.API,
    reason: str | None = None,
) -> Rollback:
    """The rollback rule (bot/domain/rollback.py) and the freezes of the release policy,
    then: superseded runs canceled on GitHub, their deployments shown inactive, auto-deploy
    paused for the environment, and the rollback deployed."""
    locked = await lock_environment(session, project_name, environment_name, clock)
    environment, now = locked.environment, locked.now
    newest = await stored.newest_deployment(session, environment)
    newest = ensure_may_roll_back(environment, newest, now, force=True)
    ask = Ask(actor=actor, door=door, force=force, reason=reason)
    admitted = await release_policy.admit(session, environment, None, ask, now)
    found = await stored.rollback_target(session, environment, target_search(newest))
    target = ensure_target(found)
    away = rolled_away_from(newest, target)
    if away is not None:
        deployed = await stored.deployments_of_candidate_in(session, environment, away)
        await stored.mark_rolled_back(session, [d.id for d in to_remember(deployed)], now)
    # Every active deployment is older than the rollback, so superseding cancels them all.
    new = await record_deployment(
        session,
        environment,
        target.release_candidate,
        kind=DeploymentKind.ROLLBACK,
        actor=actor,
        now=now,
        superseded_because=CANCELED_BY_ROLLBACK,
    )
    environment.auto_deploy_paused_at = now
    await plan_started(session, mirror, new.deployment, new.superseded)
    await release_policy.record_admitted(session, admitted, new.deployment, now)
    return Rollback(new.deployment, list(new.superseded), newest.release_candidate)


async def cancel(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    environment_name: str,
    deployment_id: int,
    actor: str | None,
    clock: Clock,
) -> Deployment:
    """Cancel one deployment that has not ended, and its run (`cancel_changes`: a retried
    cancel changes nothing)."""
    locked = await lock_environment(session, project_name, environment_name, clock)
    deployment = await stored.deployment_in(session, locked.environment, deployment_id)
    if not cancel_changes(deployment):
        return deployment
    await _cancel_all(session, mirror, [deployment], actor, locked.now)
    return deployment


async def cancel_environment(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    environment_name: str,
    actor: str | None,
    clock: Clock,
) -> list[Deployment]:
    """Cancel every deployment of the environment under way, with their runs
    (`/cancel <environment>`)."""
    locked = await lock_environment(session, project_name, environment_name, clock)
    active = await stored.active_deployments(session, locked.environment)
    ensure_something_to_cancel(active)
    await _cancel_all(session, mirror, active, actor, locked.now)
    return active


async def _cancel_all(
    session: AsyncSession,
    mirror: Mirror,
    deployments: Sequence[Deployment],
    actor: str | None,
    now: datetime,
) -> None:
    for deployment in deployments:
        cancel_deployment(deployment, canceled_by(actor), now)
    await session.flush()
    await plan_canceled(session, mirror, deployments, now)


async def create_release_candidate(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    version: str,
    repo: str,
    commit: str,
    build: bool,
    now: datetime,
) -> releases.CreatedCandidate:
    """An RC through the API. With `build`, the build workflow runs on the default branch:
    only with a GitHub App, since nothing else would ever end the build."""
    project = await find_project(session, project_name)
    if build and not mirror.enabled and project.build_workflow is not None:
        raise errors.invalid(errors.BUILD_NEEDS_GITHUB_APP)
    created = await releases.create_release_candidate(
        session,
        project,
        version=version,
        repo=repo,
        commit=commit,
        build=build,
        now=now,
    )
    if created.created and build:
        await plan_build(session, mirror, created.candidate, None, now)
    return created


async def create_candidate_from_tag(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project: Project,
    tag: str,
    version: str,
    commit: str,
    now: datetime,
    reads: BatchReads | None = None,
) -> releases.CreatedCandidate:
    """An RC from a git tag (a tag `push`, or a `create` once its commit is known).

    With a build workflow the RC is `building` and the build runs on the tag; without, it is
    `ready` and auto-deployed. The same RC at the same commit again (the tag's other event, a
    redelivery) is found and nothing more happens. With a batch's `reads`, an RC that nothing
    follows (no build, no environment taking auto-deploy) is written with the batch's others.
    """
    build = project.build_workflow is not None
    created = await releases.create_release_candidate(
        session,
        project,
        version=version,
        repo=project.repo,
        commit=commit,
        build=build,
        now=now,
        tag=tag,
        reads=reads,
    )
    if not created.created:
        return created
    if build:
        await session.flush()  # the build's outbox item names the RC by its id
        await plan_build(session, mirror, created.candidate, tag, now)
    elif reads is None or await takes_auto_deploy_anywhere(session, project, reads):
        await session.flush()  # the release policy's look-ups name the RC by its id
        await auto_deploy(session, mirror, created.candidate, now)
    return created


async def record_run_status(
    session: AsyncSession,
    mirror: Mirror,
    deployment: Deployment,
    status: DeploymentStatus,
    *,
    run_url: str | None,
    now: datetime,
) -> bool:
    """A deploy workflow run moved: the deployment follows as `follow_run` decides."""
    if run_url is not None:
        deployment.workflow_run_url = run_url
    if not follow_run(deployment, status, now):
        return False
    await plan_status(session, mirror, deployment, now)
    return True


async def finish_build(
    session: AsyncSession,
    mirror: Mirror,
    candidate: ReleaseCandidate,
    *,
    succeeded: bool,
    run_url: str | None,
    now: datetime,
    error: str | None = None,
) -> list[Deployment]:
    """The build workflow finished: the RC is ready (and auto-deployed) or failed, with
    `error` saying why (`build_result`)."""
    if candidate.build_status != BuildStatus.BUILDING:
        return []
    candidate.build_run_url = run_url or candidate.build_run_url
    result = build_result(succeeded=succeeded, error=error)
    candidate.build_status = result.status
    if result.status != BuildStatus.READY:
        candidate.build_error = result.error
    await notifications.build_finished(session, candidate, now)
    if result.status != BuildStatus.READY:
        return []
    return await auto_deploy(session, mirror, candidate, now)


async def auto_deploy(
    session: AsyncSession, mirror: Mirror, candidate: ReleaseCandidate, now: datetime
) -> list[Deployment]:
    """Deploy a ready RC to every environment of its project that asks for it
    (`auto_deploy_targets`) and whose release policy allows it now; a refusal (a freeze, the
    order, a candidate marked bad) is audited and told beside the candidate's change."""
    environments = await auto_deploy_environments(session, candidate.project_id)
    ask = Ask(actor=AUTO_DEPLOY_ACTOR, door=Door.AUTO_DEPLOY)
    started = []
    for environment in auto_deploy_targets(environments):
        try:
            admitted = await release_policy.decide(session, environment, candidate, ask, now)
        except errors.DomainError as refused:
            # Nothing rolls back here: what the refusal keeps is written in this transaction.
            kept = release_policy.refusal_kept(refused, environment, candidate, ask, now)
            await kept(session)
            continue
        new = await record_deployment(
            session, environment, candidate, actor=AUTO_DEPLOY_ACTOR, now=now
        )
        wait_for_approvals(new.deployment, admitted.approvals_required)
        await plan_started(session, mirror, new.deployment, new.superseded)
        await release_policy.record_admitted(
            session, release_policy.Admitted(admitted, ask, False), new.deployment, now
        )
        started.append(new.deployment)
    return started


async def expire_stuck(
    session: AsyncSession, mirror: Mirror, environment: Environment, now: datetime
) -> list[Deployment]:
    """Active deployments older than the environment's timeout become `error` (`expire`).

    The caller holds the environment lock.
    """
    cutoff = stuck_before(now, environment.timeout_minutes)
    expired = await stored.stuck_deployments(session, environment, cutoff)
    for deployment in expired:
        expire(deployment, environment.timeout_minutes, now)
    await session.flush()
    for deployment in expired:
        await plan_status(session, mirror, deployment, now)
    return expired


# --- freezes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FreezeChange:
    """An environment frozen or unfrozen; `now` is when (read once it was locked)."""

    environment: Environment
    was_frozen: bool  # a freeze was in effect before the change
    now: datetime


async def freeze(
    session: AsyncSession,
    *,
    project_name: str,
    environment_name: str,
    actor: str | None,
    reason: str | None,
    until: datetime | None,
    clock: Clock,
) -> FreezeChange:
    """Freeze an environment, or change a freeze's reason or end: deploys are refused until
    it is unfrozen (or `until` passes), a rollback needs force. Nothing shows on GitHub."""
    locked = await lock_environment(session, project_name, environment_name, clock)
    environment, now = locked.environment, locked.now
    was_frozen = current_freeze(environment, now) is not None
    freeze_environment(environment, reason=reason, by=actor, until=until, now=now)
    await notifications.freeze_changed(
        session, environment, was_frozen=was_frozen, actor=actor, now=now
    )
    return FreezeChange(environment, was_frozen, now)


async def unfreeze(
    session: AsyncSession,
    *,
    project_name: str,
    environment_name: str,
    clock: Clock,
    actor: str | None = None,
) -> FreezeChange:
    """End an environment's freeze (one whose `until` passed already is cleared too)."""
    locked = await lock_environment(session, project_name, environment_name, clock)
    environment, now = locked.environment, locked.now
    was_frozen = current_freeze(environment, now) is not None
    unfreeze_environment(environment)
    await notifications.freeze_changed(
        session, environment, was_frozen=was_frozen, actor=actor, now=now
    )
    return FreezeChange(environment, was_frozen, now)


# --- approvals and bad candidates -------------------------------------------------------


async def approve(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    environment_name: str,
    deployment_id: int,
    approver: Approver,
    door: Door,
    clock: Clock,
) -> Deployment:
    """One person's approval of a deployment waiting for approvals (bot/domain/approvals.py);
    the last one needed dispatches its workflow. The same person again changes nothing."""
    locked = await lock_environment(session, project_name, environment_name, clock)
    environment, now = locked.environment, locked.now
    deployment = await stored.deployment_in(session, environment, deployment_id)
    ask = Ask(actor=approver.actor, door=door)
    entry = audit.deploy_entry(
        ask,
        environment,
        deployment.release_candidate,
        action=audit.Action.APPROVE,
        decision=audit.Decision.REFUSED,
        deployment=deployment,
    )
    given = await stored_policy.approvals_of(session, deployment.id)
    counted = counted_approvers(given, now)
    try:
        if not awaits_approval(deployment):
            raise errors.invalid(errors.NOT_WAITING_FOR_APPROVAL)
        rejected = candidate_rejection(release_policy.candidate_facts(deployment.release_candidate))
        if rejected is not None:
            raise rejected
        rule = _approval_rule(environment, deployment)
        refused = approval_refusal(rule, approver, deployment.actor)
        if refused is not None:
            raise refused
    except errors.DomainError as refusal:
        why = dataclasses.replace(entry, reason=refusal.message)
        raise audit.record_after_rollback(refusal, why, now) from None
    if person(approver.actor) in counted:
        return deployment
    stale = next((a for a in given if person(a.approver) == person(approver.actor)), None)
    if stale is not None:  # given before and expired since: given again now
        stale.created_at, stale.expires_at = now, now + rule.expire
    else:
        await stored_policy.add_approval(
            session,
            deployment.id,
            approver=approver.actor,
            door=door.value,
            now=now,
            expires_at=now + rule.expire,
        )
    count = len(counted) + 1
    deployment.updated_at = now
    await audit.record(session, dataclasses.replace(entry, decision=audit.Decision.APPROVED), now)
    if count < deployment.approvals_required:
        deployment.waiting_for = waiting_text(count, deployment.approvals_required)
        return deployment
    deployment.approved_at = now
    deployment.waiting_for = None
    if deployment.workflow_run_id is not None:
        # A run started by hand, held by Tarmac's protection rule: answered, not dispatched.
        await answer_gate(session, mirror, deployment, now)
    else:
        await plan_dispatch(session, mirror, deployment, now)
    return deployment


async def answer_gate(
    session: AsyncSession,
    mirror: Mirror,
    deployment: Deployment,
    now: datetime,
    gate: protection_answers.Gate | None = None,
) -> str | None:
    """A deployment whose run is held by Tarmac's protection rule (GitHub's), which Tarmac
    let through already: approved unless something since forbids it now (`refusal_now`);
    else canceled, `Refused by Tarmac: <why>`, and rejected. Returns why, or None."""
    gate = gate or protection_answers.Gate.of(deployment)
    environment, candidate = deployment.environment, deployment.release_candidate
    refused = protection_answers.refusal_now(deployment, now)
    why = None if refused is None else described(refused, environment, now)
    if why is None:
        comment = APPROVED_DECIDED_COMMENT.format(id=deployment.id, version=candidate.version)
    else:
        comment = refused_message(why)
        cancel_deployment(deployment, comment, now)
        deployment.waiting_for = None
        await session.flush()
        await plan_status(session, mirror, deployment, now)
    await protection_answers.answer(
        session,
        gate,
        environment,
        candidate,
        refusal=why,
        comment=comment,
        now=now,
        deployment=deployment,
    )
    return why


def _approval_rule(environment: Environment, deployment: Deployment) -> ApprovalRule:
    """The environment's rule now; the number the deployment was made to wait for stays."""
    rule = release_policy.policy_of(environment).approvals
    if rule is None:
        return ApprovalRule(required=deployment.approvals_required)
    return dataclasses.replace(rule, required=deployment.approvals_required)


async def reject_deployment(
    session: AsyncSession,
    mirror: Mirror,
    *,
    project_name: str,
    environment_name: str,
    deployment_id: int,
    actor: str | None,
    reason: str,
    door: Door,
    clock: Clock,
) -> Deployment:
    """A deployment waiting for approvals is rejected: canceled, with who and why."""
    locked = await lock_environment(session, project_name, environment_name, clock)
    environment, now = locked.environment, locked.now
    deployment = await stored.deployment_in(session, environment, deployment_id)
    if not awaits_approval(deployment):
        raise errors.invalid(errors.NOT_WAITING_FOR_APPROVAL)
    by = f" by {actor}" if actor else ""
    cancel_deployment(deployment, f"Rejected{by}: {reason}", now)
    deployment.waiting_for = None
    await session.flush()
    await plan_canceled(session, mirror, [deployment], now)
    await audit.record(
        session,
        audit.deploy_entry(
            Ask(actor=actor, door=door),
            environment,
            deployment.release_candidate,
            action=audit.Action.REJECT_DEPLOYMENT,
            decision=audit.Decision.REJECTED,
            deployment=deployment,
            reason=reason,
        ),
        now,
    )
    return deployment


async def mark_bad(
    session: AsyncSession,
    *,
    project_name: str,
    version: str,
    actor: str | None,
    reason: str,
    door: Door,
    clock: Clock,
) -> ReleaseCandidate:
    """Mark a candidate bad: refused for every deploy, never a rollback target, until
    cleared. Marking it again changes the reason."""
    ensure_rc_version(version)
    project = await find_project(session, project_name)
    candidate = await find_release_candidate(session, project, version, lock=True)
    now = clock()
    candidate.rejected_at = candidate.rejected_at or now
    candidate.rejected_by, candidate.rejected_reason = actor, reason
    await _audit_candidate(session, candidate, actor, door, audit.Decision.MARKED, reason, now)
    return candidate


async def clear_bad(
    session: AsyncSession,
    *,
    project_name: str,
    version: str,
    actor: str | None,
    door: Door,
    clock: Clock,
) -> ReleaseCandidate:
    """Clear a candidate's bad mark; clearing one that has none changes nothing."""
    ensure_rc_version(version)
    project = await find_project(session, project_name)
    candidate = await find_release_candidate(session, project, version, lock=True)
    if candidate.rejected_at is None:
        return candidate
    now = clock()
    candidate.rejected_at = candidate.rejected_by = candidate.rejected_reason = None
    await _audit_candidate(session, candidate, actor, door, audit.Decision.CLEARED, None, now)
    return candidate


async def _audit_candidate(
    session: AsyncSession,
    candidate: ReleaseCandidate,
    actor: str | None,
    door: Door,
    decision: audit.Decision,
    reason: str | None,
    now: datetime,
) -> None:
    await audit.record(
        session,
        audit.Entry(
            action=audit.Action.MARK_BAD
            if decision is audit.Decision.MARKED
            else audit.Action.CLEAR_BAD,
            decision=decision,
            door=door,
            actor=actor,
            environment=None,
            project_id=candidate.project_id,
            candidate_id=candidate.id,
            reason=reason,
        ),
        now,
    )
