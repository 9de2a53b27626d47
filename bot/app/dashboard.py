"""What the dashboard shows: read-only use cases over batched queries (bot/storage/dashboard.py).

The rollback preview decides with the very functions `operations.roll_back` uses
(`ensure_may_roll_back`, `target_search`, `rollback_target`, `ensure_target`), reading only.
An environment's release policy is shown in words (bot/domain/policy_words.py) from the
values its rules decide on, with the deployment waiting for approval and who approved it; the
audit view lists a project's decisions (bot/storage/policy.py `audit_rows`).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

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
from bot.domain.candidates import ensure_rc_version
from bot.domain.changes import PullRequest
from bot.domain.freeze import Freeze, current_freeze
from bot.domain.policy import calendar_freeze
from bot.domain.policy_words import PolicyWords, policy_in_words
from bot.domain.rollback import ensure_may_roll_back, ensure_target, target_search
from bot.storage import change_reports as stored_reports
from bot.storage import dashboard as reads
from bot.storage import deployments as stored
from bot.storage import policy as stored_policy
from bot.storage.change_reports import ReportSummary
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


# How long the newest deployments kept per environment are trusted without a full read.
KEPT_SECONDS = 30.0
# How far before the last change seen a change is looked for (see `environments_changed_since`).
CHANGE_SLACK = timedelta(seconds=30)


class KeptNewest:
    """Each environment's newest success, deployment under way and failure, kept between
    overviews: a new one reads again only the environments whose deployments changed since
    the last (most overviews follow one status report, one deployment), and all of them at
    least every `KEPT_SECONDS` (what the change mark may miss: a write stamped long before
    it committed; the cached overview region trusts the mark as long).

    Reading a changed environment afresh after the deployments' ends were read keeps it at
    least as new as them; one overview at a time updates what is kept."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._lock = asyncio.Lock()
        self._seen: reads.DeploymentsSeen | None = None
        self._read_at = 0.0
        self._newest: dict[int, reads.NewestDeployments] = {}

    async def newest(
        self, session: AsyncSession, environment_ids: Sequence[int]
    ) -> dict[int, reads.NewestDeployments]:
        async with self._lock:
            seen = await reads.deployments_seen(session)
            if self._seen is None or self._monotonic() - self._read_at > KEPT_SECONDS:
                self._newest.clear()
                self._read_at = self._monotonic()
            else:
                changed = await reads.environments_changed_since(session, self._seen, CHANGE_SLACK)
                for environment_id in changed:
                    self._newest.pop(environment_id, None)
            self._seen = seen
            missing = [i for i in environment_ids if i not in self._newest]
            if missing:
                found = await reads.overview_deployments(session, missing)
                nothing = reads.NewestDeployments()
                self._newest.update({i: found.get(i, nothing) for i in missing})
            return {i: self._newest[i] for i in environment_ids}

    def clear(self) -> None:
        self._seen = None
        self._newest.clear()


async def overview(
    session: AsyncSession, identity: Identity, now: datetime, kept: KeptNewest
) -> Overview:
    """Every project the identity may view, by its environments, and the newest candidates
    with where each runs: a few queries, whatever the number of projects."""
    listed = await reads.overview_environments(session, identity.scope)
    listed = [(p, envs) for p, envs in listed if identity.may_view(p.name)]
    every_environment = [e for _, envs in listed for e in envs]
    newest = await kept.newest(session, [e.id for e in every_environment])
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


@dataclass(frozen=True, slots=True)
class ShippingCell:
    """An environment as the candidate page shows it: what runs there (its candidate loaded)
    and its freeze."""

    environment: Environment
    running: Deployment | None
    freeze: Freeze | None


@dataclass(frozen=True, slots=True)
class ReportShown:
    """What the candidate page shows of a change report: its pull requests, how many
    commits, whether the histories diverged."""

    commit_count: int
    pull_requests: tuple[PullRequest, ...]
    diverged: bool


NOTHING_SHIPS = ReportShown(0, (), False)  # the same commit runs there (`changes.identical`)
FETCHING = "The change report is being fetched from GitHub"


@dataclass(frozen=True)
class Shipping:
    """What deploying the candidate to one environment would ship."""

    cell: ShippingCell
    report: ReportShown | None
    # Why there is no report: nothing runs there, it is being fetched, GitHub refused, …
    note: str | None
    pending: bool = False


@dataclass(frozen=True)
class CandidateView:
    candidate: ReleaseCandidate
    project: Project
    shipping: list[Shipping]


# A report's key and when it was completed: a complete report is never filled again
# (`change_reports.store_report`), only forgotten when GitHub refused it.
ReportMark = tuple[tuple[str, str, str, str], int, datetime]


class ShownReports:
    """Decoded pull request lists of complete reports, by report and completion: the same
    few reports are shown page after page (every environment of a project since the same
    candidate), and decoding their JSON was most of what reading one cost."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._lists: OrderedDict[ReportMark, tuple[PullRequest, ...]] = OrderedDict()

    async def pull_requests(
        self, session: AsyncSession, summaries: Sequence[ReportSummary]
    ) -> dict[int, tuple[PullRequest, ...]]:
        """By report id: kept ones from memory, the others in one statement."""
        found: dict[int, tuple[PullRequest, ...]] = {}
        missing: dict[int, ReportMark] = {}
        for summary in summaries:
            mark = _report_mark(summary)
            kept = self._lists.get(mark)
            if kept is None:
                missing[summary.id] = mark
            else:
                self._lists.move_to_end(mark)
                found[summary.id] = kept
        if missing:
            read = await stored_reports.pull_request_lists(session, sorted(missing))
            for report_id, listed in read.items():
                self._lists[missing[report_id]] = listed
                found[report_id] = listed
            while len(self._lists) > self._size:
                self._lists.popitem(last=False)
        return found


def _report_mark(summary: ReportSummary) -> ReportMark:
    assert summary.completed_at is not None
    key = (summary.repo, summary.base_commit, summary.head_commit, summary.paths_digest)
    return (key, summary.id, summary.completed_at)


async def candidate_view(
    db: Database,
    mirror: Mirror,
    reports: ShownReports,
    *,
    project_name: str,
    version: str,
    clock: Clock,
) -> CandidateView:
    """The candidate, where it runs, and per environment its change report since what runs
    there: from the database, or asked for (without waiting: a pending report fills in live).
    One read for all environments: the project, the candidate, the environments with what
    runs there, the reports' summaries, and the pull requests of those not kept."""
    async with db.read() as session:
        project = await find_project(session, project_name)
        candidate = await find_release_candidate(session, project, version)
        now = clock()
        cells = [
            ShippingCell(environment, running, current_freeze(environment, now))
            for environment, running in await reads.environments_running(session, project.id)
        ]
        bases = {cell.environment.id: _between(cell, project, candidate) for cell in cells}
        asked = [b for b in bases.values() if isinstance(b, changes.Between) and not _same(b)]
        summaries = {
            (s.repo, s.base_commit, s.head_commit, s.paths_digest): s
            for s in await stored_reports.find_report_summaries(
                session, [changes.report_key(b) for b in asked]
            )
        }
        ready = [s for s in summaries.values() if s.completed_at is not None and s.error is None]
        lists = await reports.pull_requests(session, ready)
    shipping = []
    wanted: dict[tuple[str, str, str, str], changes.Between] = {}
    refused: dict[tuple[str, str, str, str], changes.Between] = {}
    for cell in cells:
        found = bases[cell.environment.id]
        if isinstance(found, str):
            shipping.append(Shipping(cell, None, found))
            continue
        if _same(found):
            shipping.append(Shipping(cell, NOTHING_SHIPS, None))
            continue
        key = changes.report_key(found)
        summary = summaries.get(key)
        if summary is None:
            if not mirror.enabled:
                shipping.append(Shipping(cell, None, str(errors.CHANGES_NEED_GITHUB_APP)))
                continue
            wanted[key] = found
        if summary is None or summary.completed_at is None:
            shipping.append(Shipping(cell, None, FETCHING, True))
        elif summary.error is not None:
            refused[key] = found  # said here once, then forgotten: the next view asks again
            shipping.append(Shipping(cell, None, str(errors.CHANGES_REFUSED)))
        else:
            shown = ReportShown(summary.commit_count, lists[summary.id], summary.diverged)
            shipping.append(Shipping(cell, shown, None))
    if refused:
        await changes.forget_refused(db, list(refused.values()))
    if wanted:
        await changes.ask_for_reports(db, mirror, list(wanted.values()), clock())
    return CandidateView(candidate, project, shipping)


def _between(
    cell: ShippingCell, project: Project, candidate: ReleaseCandidate
) -> changes.Between | str:
    """The report an environment's section shows (from what runs there to the candidate), or
    why there is none."""
    if cell.running is None:
        return str(errors.NOTHING_RUNNING)
    try:
        ensure_rc_version(candidate.version)
    except DomainError as refused:
        return str(refused.code)
    base = cell.running.release_candidate
    return changes.Between(project.repo, base, candidate, changes.paths_of(project))


def _same(between: changes.Between) -> bool:
    return changes.identical(between) is not None


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
