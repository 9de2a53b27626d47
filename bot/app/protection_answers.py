"""What Tarmac answers a GitHub deployment protection rule: approve or reject one run's job
for one GitHub environment, through the outbox (bot/github/outbound/protection_rule.py), with
its audit row (door `protection_rule`).

The review requests themselves are taken in bot/app/protection_rule.py; the answer to a run
that waited for approvals is given here too, when its last approval comes
(bot/app/operations.py `approve`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import audit
from bot.app.policy import candidate_facts, policy_of
from bot.core.errors import DomainError
from bot.domain.policy import Ask, Door
from bot.domain.protection_rule import clipped, refusal_since_decided
from bot.domain.statuses import DeploymentKind
from bot.storage.models import Deployment, Environment, ReleaseCandidate
from bot.storage.outbox import Action, enqueue, protection_rule_key

APPROVED = "approved"
REJECTED = "rejected"


@dataclass(frozen=True)
class Gate:
    """One job held by Tarmac's protection rule: its run, the GitHub environment as GitHub
    names it (the answer names it back), and who started the run."""

    repo: str
    run_id: int
    environment: str
    sender: str | None
    # The GitHub Deployment Actions made for the job, when the payload has one.
    github_deployment_id: int | None = None

    @classmethod
    def of(cls, deployment: Deployment) -> Gate:
        """The gate of a deployment recorded for a held run (its run and environment)."""
        assert deployment.workflow_run_id is not None
        environment = deployment.environment
        return cls(
            repo=environment.project.repo,
            run_id=deployment.workflow_run_id,
            environment=environment.name,
            sender=deployment.actor,
            github_deployment_id=deployment.github_deployment_id,
        )


async def answer(
    session: AsyncSession,
    gate: Gate,
    environment: Environment | None,
    candidate: ReleaseCandidate | None,
    *,
    refusal: str | None,
    comment: str,
    now: datetime,
    deployment: Deployment | None = None,
) -> None:
    """The answer, sent once the change commits (approved when `refusal` is None, rejected
    otherwise), in order with the run's other answers; and its audit row, when the run has an
    environment of Tarmac's to record it under."""
    await enqueue(
        session,
        action=Action.ANSWER_PROTECTION_RULE,
        ordering_key=protection_rule_key(gate.run_id),
        repo=gate.repo,
        deployment_id=deployment.id if deployment is not None else None,
        payload={
            "run_id": gate.run_id,
            "environment_name": gate.environment,
            "state": APPROVED if refusal is None else REJECTED,
            "comment": clipped(comment),
        },
        now=now,
    )
    if environment is None:
        return
    decision = audit.Decision.ALLOWED if refusal is None else audit.Decision.REFUSED
    await record_decision(
        session,
        gate,
        environment,
        candidate,
        decision=decision,
        now=now,
        deployment=deployment,
        reason=refusal,
    )


async def record_decision(
    session: AsyncSession,
    gate: Gate,
    environment: Environment,
    candidate: ReleaseCandidate | None,
    *,
    decision: audit.Decision,
    now: datetime,
    deployment: Deployment | None = None,
    reason: str | None = None,
) -> None:
    rollback = deployment is not None and deployment.kind == DeploymentKind.ROLLBACK
    entry = audit.deploy_entry(
        Ask(actor=gate.sender, door=Door.PROTECTION_RULE),
        environment,
        candidate,
        action=audit.Action.ROLLBACK if rollback else audit.Action.DEPLOY,
        decision=decision,
        deployment=deployment,
        reason=reason,
    )
    await audit.record(session, entry, now)


def refusal_now(deployment: Deployment, now: datetime) -> DomainError | None:
    """Why a deployment Tarmac let through may not go on now (bot/domain/protection_rule.py
    `refusal_since_decided`): its candidate marked bad, or a freeze begun since."""
    environment = deployment.environment
    return refusal_since_decided(
        candidate_facts(deployment.release_candidate),
        environment,
        policy_of(environment),
        deployment.deploy_start_at,
        now,
    )
