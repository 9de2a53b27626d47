"""The audit of the release policy: every decision that allowed, refused, forced, approved,
rejected or overrode something, with who, when, why and through which door.

An allowed decision is recorded in the transaction that carries it out. A refusal rolls that
transaction back, so it is recorded after the rollback, in a transaction of its own
(errors.DomainError.after_rollback, bot/storage/db.py): nothing it refused is left behind,
and the refusal is still on record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.errors import DomainError
from bot.core.pages import Page, PageRequest
from bot.domain.policy import Ask, Door
from bot.storage.models import AuditEvent, Deployment, Environment, ReleaseCandidate
from bot.storage.policy import AuditListed, audit_rows, record_audit
from bot.storage.projects import find_environment, find_project

# An audit event as listed: with its environment's name and its candidate's version.
Listed = AuditListed


class Action(StrEnum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    APPROVE = "approve"
    REJECT_DEPLOYMENT = "reject_deployment"
    MARK_BAD = "mark_bad"
    CLEAR_BAD = "clear_bad"


class Decision(StrEnum):
    ALLOWED = "allowed"
    FORCED = "forced"  # allowed only by force: `reason` says why and what it overrode
    REFUSED = "refused"
    WAITING = "waiting"  # allowed, waiting for approvals
    APPROVED = "approved"
    REJECTED = "rejected"
    MARKED = "marked"
    CLEARED = "cleared"


@dataclass(frozen=True)
class Entry:
    action: Action
    decision: Decision
    door: Door
    actor: str | None
    environment: Environment | None
    project_id: int
    candidate_id: int | None = None
    deployment_id: int | None = None
    reason: str | None = None

    def row(self, at: datetime) -> AuditEvent:
        return AuditEvent(
            project_id=self.project_id,
            environment_id=self.environment.id if self.environment is not None else None,
            release_candidate_id=self.candidate_id,
            deployment_id=self.deployment_id,
            at=at,
            door=self.door.value,
            actor=self.actor,
            action=self.action.value,
            decision=self.decision.value,
            reason=self.reason,
        )


async def record(session: AsyncSession, entry: Entry, at: datetime) -> None:
    await record_audit(session, entry.row(at))


def record_after_rollback(refused: DomainError, entry: Entry, at: datetime) -> DomainError:
    """`refused`, carrying its own record: written once its transaction has rolled back."""
    row = entry.row(at)

    async def keep(session: AsyncSession) -> None:
        await record_audit(session, row)

    refused.after_rollback.append(keep)
    return refused


def deploy_entry(
    ask: Ask,
    environment: Environment,
    candidate: ReleaseCandidate | None,
    *,
    action: Action,
    decision: Decision,
    deployment: Deployment | None = None,
    reason: str | None = None,
) -> Entry:
    return Entry(
        action=action,
        decision=decision,
        door=ask.door,
        actor=ask.actor,
        environment=environment,
        project_id=environment.project_id,
        candidate_id=candidate.id if candidate is not None else None,
        deployment_id=deployment.id if deployment is not None else None,
        reason=reason,
    )


async def audit_listing(
    session: AsyncSession, project_name: str, environment_name: str | None, page: PageRequest
) -> Page[Listed]:
    """A project's decisions, newest first; with `environment_name`, only that environment's
    (a candidate's marks belong to no environment)."""
    if environment_name is None:
        project = await find_project(session, project_name)
        return await audit_rows(session, project.id, None, page)
    environment = await find_environment(session, project_name, environment_name)
    return await audit_rows(session, environment.project_id, environment.id, page)
