"""What the dashboard shows: read-only use cases over batched queries (bot/storage/dashboard.py).

The rollback preview decides with the very functions `operations.roll_back` uses
(`ensure_may_roll_back`, `target_search`, `rollback_target`, `ensure_target`), reading only.
An environment's release policy is shown in words (bot/domain/policy_words.py) from the
values its rules decide on, with the deployment waiting for approval and who approved it; the
audit view lists a project's decisions (bot/storage/policy.py `audit_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import changes
from bot.app.operations import Mirror, awaits_approval
from bot.app.policy import policy_of
from bot.core import errors
from bot.core.clock import Clock
from bot.core.errors import DomainError
from bot.core.pages import Page, PageRequest
from bot.domain.access import Identity
from bot.domain.approvals import ApprovalRule, counted_approvers
from bot.domain.changes import ChangeReport
from bot.domain.freeze import Freeze, current_freeze
from bot.domain.policy import calendar_freeze
from bot.domain.policy_words import PolicyWords, policy_in_words
from bot.domain.rollback import ensure_may_roll_back, ensure_target, target_search
from bot.storage import dashboard as reads
from bot.storage import deployments as stored
from bot.storage import policy as stored_policy
from bot.storage.db import Database
from bot.storage.environments import environments_of
from bot.storage.models import Deployment, Environment, Project, ReleaseCandidate
from bot.storage.policy import AuditListed
from bot.storage.projects import find_environment, find_project
from bot.storage.releases import find_release_candidate

NEWEST_CANDIDATES = 10


@dataclass(frozen=True)
class Cell:
    """One environment at a glance."""

    environment: Environment
    running: Deployment | None  # its newest success: the RC and since when
    active: Deployment | None
    freeze: Freeze | None
    last_failure: Deployment | None


@dataclass(frozen=True, slots=True)
class OverviewCell:
    """One environment at a glance, in plain values (bot/storage/dashboard.py)."""

    environment: reads.EnvironmentFacts
    running: reads.DeploymentFacts | None  # its newest success: the RC and since when
    active: reads.DeploymentFacts | None
    freeze: Freeze | None
    last_failure: reads.DeploymentFacts | None


@dataclass(frozen=True, slots=True)
class ProjectRow:
    project: reads.ProjectFacts
    cells: list[OverviewCell]


@dataclass(frozen=True, slots=True)
class CandidateRow:
    candidate: reads.CandidateFacts
    project: reads.ProjectFacts
    running_in: list[str]  # environment names


@dataclass(frozen=True, slots=True)
class Overview:
    rows: list[ProjectRow]
    candidates: list[CandidateRow]


async def _cells(
    session: AsyncSession, environments: list[Environment], now: datetime
) -> dict[int, Cell]:
    ids = [e.id for e in environments]
    running = await reads.running_deployments(session, ids)
    active = await reads.active_deployments(session, ids)
    failed = await reads.last_failures(session, ids)
    return {
        e.id: Cell(e, running.get(e.id), active.get(e.id), current_freeze(e, now), failed.get(e.id))
        for e in environments
    }


async def overview(session: AsyncSession, identity: Identity, now: datetime) -> Overview:
    """Every project the identity may view, by its environments, and the newest candidates
    with where each runs: four queries, whatever the number of projects."""
    listed = await reads.overview_environments(session, identity.scope)
    listed = [(p, envs) for p, envs in listed if identity.may_view(p.name)]
    every_environment = [e for _, envs in listed for e in envs]
    newest = await reads.overview_deployments(session, [e.id for e in every_environment])
    nothing = reads.NewestDeployments()
    rows = []
    running_in: dict[int, list[str]] = {}  # candidate id -> where it runs
    for project, environments in listed:
        cells = []
        for environment in environments:
            found = newest.get(environment.id, nothing)
            freeze = current_freeze(environment, now)
            cells.append(
                OverviewCell(environment, found.running, found.active, freeze, found.last_failure)
            )
            if found.running is not None:
                running_in.setdefault(found.running.release_candidate_id, []).append(
                    environment.name
                )
        rows.append(ProjectRow(project, cells))
    by_id = {p.id: p for p, _ in listed}
    candidates = await reads.newest_candidate_facts(session, list(by_id), NEWEST_CANDIDATES)
    return Overview(
        rows,
        [CandidateRow(c, by_id[c.project_id], running_in.get(c.id, [])) for c in candidates],
    )


@dataclass(frozen=True)
class RollbackPreview:
    """What a rollback would do now: its target, or the refusal it would meet."""

    target: ReleaseCandidate | None
    refusal: str | None
    needs_force: bool  # the environment is frozen (by hand or its calendar): only forced


async def rollback_preview(
    session: AsyncSession, environment: Environment, now: datetime
) -> RollbackPreview:
    newest = await stored.newest_deployment(session, environment)
    frozen = (
        current_freeze(environment, now) is not None
        or calendar_freeze(policy_of(environment), now) is not None
    )
    try:
        newest = ensure_may_roll_back(environment, newest, now, force=True)
        found = await stored.rollback_target(session, environment, target_search(newest))
        target = ensure_target(found)
    except DomainError as refused:
        return RollbackPreview(None, str(refused.code), frozen)
    return RollbackPreview(target.release_candidate, None, frozen)


@dataclass(frozen=True)
class Waiting:
    """The environment's deployment waiting for approvals: who approved it so far (those
    whose approval still counts) and the rule that says who else may."""

    deployment: Deployment
    approved_by: frozenset[str]
    rule: ApprovalRule


@dataclass(frozen=True)
class EnvironmentView:
    cell: Cell
    history: Page[Deployment]
    rollback: RollbackPreview
    policy: PolicyWords
    waiting: Waiting | None


async def environment_view(
    session: AsyncSession,
    project_name: str,
    environment_name: str,
    page: PageRequest,
    now: datetime,
) -> EnvironmentView:
    environment = await find_environment(session, project_name, environment_name)
    cells = await _cells(session, [environment], now)
    history = await stored.deployment_page(session, environment, page)
    preview = await rollback_preview(session, environment, now)
    cell = cells[environment.id]
    words = policy_in_words(policy_of(environment), now)
    return EnvironmentView(cell, history, preview, words, await _waiting(session, cell, now))


async def _waiting(session: AsyncSession, cell: Cell, now: datetime) -> Waiting | None:
    deployment = cell.active
    if deployment is None or not awaits_approval(deployment):
        return None
    given = await stored_policy.approvals_of(session, deployment.id)
    rule = policy_of(cell.environment).approvals
    # The number it was made to wait for stays; who may approve is the rule now.
    required = deployment.approvals_required
    rule = (
        ApprovalRule(required=required)
        if rule is None
        else ApprovalRule(required, rule.approvers, rule.expire)
    )
    return Waiting(deployment, frozenset(counted_approvers(given, now)), rule)


@dataclass(frozen=True)
class Shipping:
    """What deploying the candidate to one environment would ship."""

    cell: Cell
    report: ChangeReport | None
    # Why there is no report: nothing runs there, it is being fetched, GitHub refused, …
    note: str | None
    pending: bool = False


@dataclass(frozen=True)
class CandidateView:
    candidate: ReleaseCandidate
    project: Project
    shipping: list[Shipping]


async def candidate_view(
    db: Database,
    mirror: Mirror,
    *,
    project_name: str,
    version: str,
    clock: Clock,
) -> CandidateView:
    """The candidate, where it runs, and per environment its change report since what runs
    there: from the database, or asked for (without waiting: a pending report fills in live)."""
    async with db.read() as session:
        project = await find_project(session, project_name)
        candidate = await find_release_candidate(session, project, version)
        listed = await reads.projects_with_environments(session, frozenset({project_name}))
        environments = listed[0][1] if listed else []
        cells = await _cells(session, environments, clock())
    shipping = [
        await _shipping(db, mirror, cells[e.id], project_name, version, clock) for e in environments
    ]
    return CandidateView(candidate, project, shipping)


async def _shipping(
    db: Database,
    mirror: Mirror,
    cell: Cell,
    project_name: str,
    version: str,
    clock: Clock,
) -> Shipping:
    if cell.running is None:
        return Shipping(cell, None, str(errors.NOTHING_RUNNING))
    try:
        answer = await changes.change_report(
            db,
            mirror,
            project_name=project_name,
            version=version,
            since=None,
            environment_name=cell.environment.name,
            clock=clock,
            wait=0.0,
        )
    except DomainError as refused:
        return Shipping(cell, None, str(refused.code))
    if answer.report is None:
        return Shipping(cell, None, "The change report is being fetched from GitHub", True)
    return Shipping(cell, answer.report, None)


@dataclass(frozen=True)
class AuditView:
    """A page of a project's audit, or of one environment's."""

    project: Project
    environments: list[Environment]  # to filter by, removed ones included
    environment: Environment | None  # the filter
    rows: Page[AuditListed]


async def audit_view(
    session: AsyncSession,
    project_name: str,
    environment_name: str | None,
    page: PageRequest,
) -> AuditView:
    project = await find_project(session, project_name)
    environments = await environments_of(session, project)
    environment = None
    if environment_name is not None:
        environment = await find_environment(session, project_name, environment_name)
    rows = await stored_policy.audit_rows(
        session, project.id, environment.id if environment is not None else None, page
    )
    return AuditView(project, environments, environment, rows)
