"""The release policy in the graph (docs/policy.md): an environment's rules and its calendar,
a candidate's bad mark, a deployment's approvals, and a project's audit.

What a policy field shows is worked out by the same functions the rules use
(bot/domain/policy.py, bot/domain/calendar.py), at the request's one `now`.
"""

from __future__ import annotations

from datetime import datetime

import strawberry

from api.graphql.context import GraphContext
from api.graphql.pagination import Connection, Slice, connection, id_after
from bot.app import audit
from bot.app.policy import policy_of
from bot.domain.calendar import Span
from bot.domain.policy import Door, calendar_freeze, upcoming_window
from bot.storage import policy as stored_policy
from bot.storage.models import Approval, Environment, ReleaseCandidate
from bot.storage.policy import AuditListed

strawberry.enum(Door, description="Through what a deploy or a decision came.")
strawberry.enum(audit.Action, name="AuditAction", description="What a decision was about.")
strawberry.enum(audit.Decision, name="AuditDecision", description="What was decided.")

AUDIT = "audit"


@strawberry.type(description="Why a candidate is marked bad, by whom, since when.")
class Rejection:
    reason: str | None
    by: str | None
    at: datetime


def rejection_of(candidate: ReleaseCandidate) -> Rejection | None:
    if candidate.rejected_at is None:
        return None
    return Rejection(
        reason=candidate.rejected_reason, by=candidate.rejected_by, at=candidate.rejected_at
    )


@strawberry.type(name="Approval", description="One person's approval of one deployment.")
class ApprovalNode:
    approver: str
    at: datetime = strawberry.field(description="When it was given (or given again).")
    expires_at: datetime = strawberry.field(description="Until when it counts.")


def approval_nodes(found: list[Approval]) -> list[ApprovalNode]:
    return [
        ApprovalNode(approver=a.approver, at=a.created_at, expires_at=a.expires_at) for a in found
    ]


@strawberry.type(description="The calendar window that freezes an environment now.")
class CalendarFreeze:
    window: str = strawberry.field(description="The window's name in the projects file.")
    reason: str
    until: datetime = strawberry.field(
        description="When the freeze ends: the end of every window it runs into."
    )


@strawberry.type(description="The next calendar window to begin (within about 400 days).")
class NextFreeze:
    window: str
    reason: str
    starts_at: datetime
    ends_at: datetime


@strawberry.type(name="ReleasePolicy", description="An environment's rules (docs/policy.md).")
class ReleasePolicyNode:
    requires: list[str] = strawberry.field(
        description="The environments a candidate must run in before it comes here."
    )
    soak_minutes: int = strawberry.field(
        description="How long ago its deployment there must have succeeded."
    )
    approvals_required: int = strawberry.field(
        description="How many people other than the requester approve each deploy (0: none)."
    )


def policy_node(environment: Environment) -> ReleasePolicyNode:
    policy = policy_of(environment)
    return ReleasePolicyNode(
        requires=list(policy.requires),
        soak_minutes=int(policy.soak.total_seconds() // 60),
        approvals_required=policy.approvals.required if policy.approvals is not None else 0,
    )


def calendar_freeze_of(environment: Environment, now: datetime) -> CalendarFreeze | None:
    span = calendar_freeze(policy_of(environment), now)
    if span is None:
        return None
    return CalendarFreeze(window=span.window.name, reason=span.window.reason, until=span.end)


def next_freeze_of(environment: Environment, now: datetime) -> NextFreeze | None:
    span: Span | None = upcoming_window(policy_of(environment), now)
    if span is None:
        return None
    return NextFreeze(
        window=span.window.name, reason=span.window.reason, starts_at=span.start, ends_at=span.end
    )


@strawberry.type(
    name="AuditEntry",
    description="A decision of the release policy: who, when, through which door, and why.",
)
class AuditEntryNode:
    row: strawberry.Private[AuditListed]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.event.id))

    @strawberry.field
    def at(self) -> datetime:
        return self.row.event.at

    @strawberry.field
    def door(self) -> Door:
        return Door(self.row.event.door)

    @strawberry.field
    def actor(self) -> str | None:
        return self.row.event.actor

    @strawberry.field
    def action(self) -> audit.Action:
        return audit.Action(self.row.event.action)

    @strawberry.field
    def decision(self) -> audit.Decision:
        return audit.Decision(self.row.event.decision)

    @strawberry.field(
        description="Why: a refusal's message, a forced deploy's reason and what it overrode."
    )
    def reason(self) -> str | None:
        return self.row.event.reason

    @strawberry.field(description="The environment's name (none for a candidate's mark).")
    def environment(self) -> str | None:
        return self.row.environment

    @strawberry.field(description="The candidate's version (none for a refused rollback).")
    def version(self) -> str | None:
        return self.row.version

    @strawberry.field(description="The deployment it made or decided on.")
    def deployment_id(self) -> strawberry.ID | None:
        found = self.row.event.deployment_id
        return strawberry.ID(str(found)) if found is not None else None


async def audit_connection(
    context: GraphContext, project_id: int, environment_id: int | None, page: Slice
) -> Connection[AuditEntryNode]:
    before = id_after(page)
    rows = await context.read(
        lambda s: stored_policy.audit_slice(s, project_id, environment_id, before, page.limit)
    )
    return connection(rows, page, AUDIT, _position, lambda r: AuditEntryNode(row=r))


def _position(row: AuditListed) -> str:
    return str(row.event.id)
