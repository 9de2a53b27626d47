"""The release policy applied to one deploy or rollback: the facts its rules need loaded,
the rules of bot/domain/policy.py asked in their order, and the decision audited.

Every door's deploy goes through `admit` (bot/app/operations.py), so the API, pull-request
commands, the dashboard, auto-deploy and GitHub's protection rule are held to the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import audit, notifications
from bot.core import errors
from bot.domain.freeze import current_freeze
from bot.domain.policy import (
    Ask,
    Candidate,
    Decision,
    EnvironmentPolicy,
    approvals_required,
    calendar_freeze,
    calendar_refusal,
    candidate_rejection,
    ensure_force_reason,
    overridable,
    promotion_refusal,
)
from bot.storage.models import Deployment, Environment, ReleaseCandidate
from bot.storage.policy import record_audit, required_stays


def policy_of(environment: Environment) -> EnvironmentPolicy:
    return EnvironmentPolicy.from_stored(environment.policy)


def candidate_facts(candidate: ReleaseCandidate) -> Candidate:
    return Candidate(
        id=candidate.id,
        version=candidate.version,
        rejected_reason=candidate.rejected_reason,
        rejected_by=candidate.rejected_by,
        rejected_at=candidate.rejected_at,
    )


@dataclass(frozen=True)
class Admitted:
    """A deploy the rules let through: what force overrode, and the approvals it waits for."""

    decision: Decision
    ask: Ask
    rollback: bool

    @property
    def forced(self) -> bool:
        return bool(self.decision.overridden)


async def decide(
    session: AsyncSession,
    environment: Environment,
    candidate: ReleaseCandidate | None,
    ask: Ask,
    now: datetime,
) -> Decision:
    """The rules in their order (bot/domain/policy.py) for a deploy of `candidate`, or for a
    rollback (`candidate` None: the rollback rule never picks a candidate marked bad, and
    rollbacks skip the order and approvals); raises the first refusal force does not
    override."""
    rollback = candidate is None
    policy = policy_of(environment)
    decision = Decision()
    facts = candidate_facts(candidate) if candidate is not None else None
    rejected = candidate_rejection(facts) if facts is not None else None
    if rejected is not None:
        raise rejected
    manual = current_freeze(environment, now)
    if manual is not None:
        overridable(ask, errors.invalid(errors.ENVIRONMENT_FROZEN), decision)
    window = calendar_freeze(policy, now)
    if window is not None:
        overridable(ask, calendar_refusal(window), decision)
    if facts is not None and policy.requires:
        stays = await required_stays(session, environment, policy.requires)
        overridable(ask, promotion_refusal(policy, facts, environment.name, stays, now), decision)
    # The API's rollback of a manually frozen environment has always been `{"force": true}`.
    spec_override = rollback and window is None
    if decision.overridden:
        ensure_force_reason(ask, spec_rollback_override=spec_override)
    decision.approvals_required = approvals_required(policy, rollback=rollback)
    return decision


async def admit(
    session: AsyncSession,
    environment: Environment,
    candidate: ReleaseCandidate | None,
    ask: Ask,
    now: datetime,
) -> Admitted:
    """`decide` (`candidate` None for a rollback), with a refusal carrying what it leaves
    behind (`refusal_kept`), written after the rollback."""
    try:
        decision = await decide(session, environment, candidate, ask, now)
    except errors.DomainError as refused:
        refused.after_rollback.append(refusal_kept(refused, environment, candidate, ask, now))
        raise refused from None
    return Admitted(decision, ask, candidate is None)


def refusal_kept(
    refused: errors.DomainError,
    environment: Environment,
    candidate: ReleaseCandidate | None,
    ask: Ask,
    now: datetime,
) -> errors.AfterRollback:
    """What a refused deploy or rollback leaves behind, whatever its door: its audit entry
    and its notification (`deployment.refused`, the refusal's message as its reason). Both are
    taken now, from what the refusal saw, and written in one transaction by the function
    returned: after the request's rollback (`admit`), or beside auto-deploy's change."""
    entry = audit.deploy_entry(
        ask,
        environment,
        candidate,
        action=audit.Action.ROLLBACK if candidate is None else audit.Action.DEPLOY,
        decision=audit.Decision.REFUSED,
        reason=refused.message,
    )
    row = entry.row(now)
    notice = notifications.refusal_notice(environment, candidate, ask.actor, refused.message, now)

    async def keep(session: AsyncSession) -> None:
        await record_audit(session, row)
        await notifications.deploy_refused(session, notice, now)

    return keep


async def record_admitted(
    session: AsyncSession, admitted: Admitted, deployment: Deployment, now: datetime
) -> None:
    """The audit of a deploy the rules let through, in its own transaction."""
    decision = admitted.decision
    if admitted.forced:
        verdict = audit.Decision.FORCED
        why = (admitted.ask.reason or "").strip() or "no reason given"
        reason = f"{why} (overrode: {'; '.join(decision.overridden)})"
    elif decision.approvals_required:
        verdict, reason = audit.Decision.WAITING, None
    else:
        verdict, reason = audit.Decision.ALLOWED, None
    entry = audit.deploy_entry(
        admitted.ask,
        deployment.environment,
        deployment.release_candidate,
        action=audit.Action.ROLLBACK if admitted.rollback else audit.Action.DEPLOY,
        decision=verdict,
        deployment=deployment,
        reason=reason,
    )
    await audit.record(session, entry, now)
