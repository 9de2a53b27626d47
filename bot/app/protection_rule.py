"""Tarmac as a GitHub deployment protection rule: the review request for a job held at a
GitHub environment, answered as Tarmac's rules say (docs/github-app.md, "Tarmac as a
protection rule").

- A run Tarmac knows (`answer_known`): its own deploy or rollback, or a run it answered
  before. Under way, Tarmac decided already: approved unless something since forbids it
  (`operations.answer_gate`). Canceled: rejected, saying why. Ended: a re-run, decided anew.
- A run someone started (`answer_hand_run`): the release policy decides, as for any other
  door (`bot/app/policy.py` `decide`, door `protection_rule`, the run's sender asking). The
  run is recorded either way: allowed, a `deploy` deployment that follows its run; waiting
  for approvals, a `pending` one answered at its last approval; refused, a `canceled` one,
  `Refused by Tarmac: <why>`.
- A run Tarmac cannot place (`reject_unplaced`): no project, environment or candidate of
  Tarmac's; rejected, saying so.

Every answer goes through the outbox (bot/app/protection_answers.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import audit, notifications, operations, protection_answers
from bot.app import policy as release_policy
from bot.app.deployments import record_deployment
from bot.app.operations import Mirror
from bot.app.protection_answers import Gate
from bot.core.errors import DomainError
from bot.domain.candidates import ensure_deployable
from bot.domain.environments import ensure_accepts_deployments
from bot.domain.policy import Ask, Door
from bot.domain.protection_rule import (
    APPROVED_COMMENT,
    CANCELED_RUN,
    KnownRun,
    described,
    known_run,
    refused_message,
)
from bot.domain.statuses import DeploymentStatus
from bot.storage.models import Deployment, Environment, ReleaseCandidate


async def answer_known(
    session: AsyncSession, mirror: Mirror, deployment: Deployment, gate: Gate, now: datetime
) -> str:
    name = f"deployment {deployment.id}"
    if operations.awaits_approval(deployment):
        return f"{name} still waits for {deployment.waiting_for}"  # answered at the last one
    verdict = known_run(deployment.status)
    if verdict is KnownRun.RECHECK:
        why = await operations.answer_gate(session, mirror, deployment, now, gate)
        return f"{name} approved" if why is None else f"{name} rejected: {why}"
    if verdict is KnownRun.CANCELED:
        why = CANCELED_RUN.format(id=deployment.id, why=deployment.error_message or "canceled")
        await protection_answers.answer(
            session,
            gate,
            deployment.environment,
            deployment.release_candidate,
            refusal=why,
            comment=refused_message(why),
            now=now,
            deployment=deployment,
        )
        return f"run {gate.run_id} rejected: {why}"
    # Run again after it ended: the run's events follow the new deployment from now on.
    deployment.workflow_run_id = None
    await session.flush()
    return await answer_hand_run(
        session, mirror, deployment.environment, deployment.release_candidate, gate, now
    )


async def answer_hand_run(
    session: AsyncSession,
    mirror: Mirror,
    environment: Environment,
    candidate: ReleaseCandidate,
    gate: Gate,
    now: datetime,
) -> str:
    ask = Ask(actor=gate.sender, door=Door.PROTECTION_RULE)
    try:
        ensure_accepts_deployments(environment)
        ensure_deployable(candidate)
        decision = await release_policy.decide(session, environment, candidate, ask, now)
    except DomainError as refused:
        return await _refused(session, mirror, environment, candidate, gate, refused, now)
    new = await record_deployment(session, environment, candidate, actor=gate.sender, now=now)
    deployment = _held_run(new.deployment, gate)
    operations.wait_for_approvals(deployment, decision.approvals_required)
    await notifications.deployment_recorded(session, deployment, now)
    await operations.plan_canceled(session, mirror, new.superseded, now)
    await operations.plan_status(session, mirror, deployment, now)
    name = f"run {gate.run_id}: deployment {deployment.id} of {candidate.version}"
    if decision.approvals_required:
        await protection_answers.record_decision(
            session,
            gate,
            environment,
            candidate,
            decision=audit.Decision.WAITING,
            now=now,
            deployment=deployment,
        )
        return f"{name} waits for {deployment.waiting_for}"
    comment = APPROVED_COMMENT.format(version=candidate.version, environment=environment.name)
    await protection_answers.answer(
        session,
        gate,
        environment,
        candidate,
        refusal=None,
        comment=comment,
        now=now,
        deployment=deployment,
    )
    return f"{name} approved"


async def reject_unplaced(
    session: AsyncSession,
    gate: Gate,
    why: str,
    now: datetime,
    environment: Environment | None = None,
) -> str:
    """A run Tarmac cannot place: rejected, saying what it does not know; audited under the
    environment when it has one."""
    await protection_answers.answer(
        session, gate, environment, None, refusal=why, comment=refused_message(why), now=now
    )
    return f"run {gate.run_id} rejected: {why}"


async def _refused(
    session: AsyncSession,
    mirror: Mirror,
    environment: Environment,
    candidate: ReleaseCandidate,
    gate: Gate,
    refused: DomainError,
    now: datetime,
) -> str:
    """A run the rules refuse: in the history as a canceled deployment, saying why."""
    why = described(refused, environment, now)
    new = await record_deployment(
        session,
        environment,
        candidate,
        actor=gate.sender,
        now=now,
        status=DeploymentStatus.CANCELED,
        error_message=refused_message(why),
    )
    deployment = _held_run(new.deployment, gate)
    await operations.plan_status(session, mirror, deployment, now)
    await protection_answers.answer(
        session,
        gate,
        environment,
        candidate,
        refusal=why,
        comment=refused_message(why),
        now=now,
        deployment=deployment,
    )
    return f"run {gate.run_id} rejected: {why}"


def _held_run(deployment: Deployment, gate: Gate) -> Deployment:
    """A deployment of a run Tarmac did not start: its run's, with the GitHub Deployment
    Actions made for the job (Tarmac makes none and posts no status of its own)."""
    deployment.workflow_run_id = gate.run_id
    deployment.github_deployment_id = gate.github_deployment_id
    deployment.github_deployment_by_actions = True
    return deployment
