"""The graph's object types. Each wraps a row of the request's session and resolves its links
through the request's DataLoaders (api/graphql/context.py), never one query per parent.

Ids are GraphQL `ID`s (strings): deployment ids are 64-bit, more than GraphQL's `Int` holds.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.graphql.context import GraphContext
from api.graphql.pagination import (
    DEFAULT_FIRST,
    Connection,
    connection,
    id_after,
    page_request,
)
from api.graphql.policy import (
    AUDIT,
    ApprovalNode,
    AuditEntryNode,
    CalendarFreeze,
    NextFreeze,
    Rejection,
    ReleasePolicyNode,
    approval_nodes,
    audit_connection,
    calendar_freeze_of,
    next_freeze_of,
    policy_node,
    rejection_of,
)
from bot.app.changes import Between, complete, ensure_one_base, identical, paths_of, report_key
from bot.core import errors
from bot.domain.candidates import ensure_rc_version
from bot.domain.changes import ChangeReport as DomainReport
from bot.domain.freeze import current_freeze
from bot.domain.statuses import BuildStatus, DeploymentKind, DeploymentStatus
from bot.storage import deployments as stored_deployments
from bot.storage import releases as stored_releases
from bot.storage.change_reports import report_of
from bot.storage.deployments import DeploymentFilter
from bot.storage.models import Deployment, Environment, Project, Release, ReleaseCandidate

Context = Info[GraphContext, None]

strawberry.enum(DeploymentStatus, description="A deployment's status, as the REST API's.")
strawberry.enum(DeploymentKind, description="How a deployment was made.")
strawberry.enum(BuildStatus, description="Where a release candidate's build stands.")


@strawberry.enum(description="Whether a change report is in: READY, or PENDING (asked for).")
class ReportStatus(Enum):
    READY = "ready"
    PENDING = "pending"


def _ctx(info: Context) -> GraphContext:
    return info.context


# --- change reports --------------------------------------------------------------------


@strawberry.type(description="A commit a change report lists.")
class Commit:
    sha: str
    message: str
    author: str | None
    url: str


@strawberry.type(description="A pull request a change report lists.")
class PullRequest:
    number: int
    title: str
    author: str | None
    url: str
    merged_at: datetime | None


@strawberry.type(description="One end of a change report.")
class ReportEnd:
    version: str
    commit: str


@strawberry.type(
    description=(
        "What a candidate ships since another candidate or since what runs in an environment. "
        "PENDING: asked for from GitHub (never waited on); ask again for the lists."
    )
)
class ChangeReport:
    status: ReportStatus
    base: ReportEnd
    head: ReportEnd
    ahead_by: int | None
    diverged: bool | None
    # The stored row whose lists `commits` and `pullRequests` read (batched), when asked:
    # None for a report not in yet, or of two candidates at one commit (nothing between).
    stored_id: strawberry.Private[int | None]
    count: strawberry.Private[int | None]

    @strawberry.field
    async def commits(self, info: Context) -> list[Commit]:
        report = await self._lists(info)
        if report is None:
            return []
        return [
            Commit(sha=c.sha, message=c.message, author=c.author, url=c.url) for c in report.commits
        ]

    @strawberry.field
    async def pull_requests(self, info: Context) -> list[PullRequest]:
        report = await self._lists(info)
        if report is None:
            return []
        return [
            PullRequest(
                number=pr.number,
                title=pr.title,
                author=pr.author,
                url=pr.url,
                merged_at=pr.merged_at,
            )
            for pr in report.pull_requests
        ]

    @strawberry.field
    def pull_request_count(self) -> int | None:
        return self.count

    async def _lists(self, info: Context) -> DomainReport | None:
        if self.stored_id is None:
            return None
        row = await _ctx(info).loaders.report_lists.load(self.stored_id)
        return report_of(row) if row is not None else None


def _end(candidate: ReleaseCandidate) -> ReportEnd:
    return ReportEnd(version=candidate.version, commit=candidate.commit_sha)


async def change_report(
    info: Context, head: ReleaseCandidate, since: str | None, environment: str | None
) -> ChangeReport:
    """The report as GET …/changes gives it (same refusals, same order of checks), from
    batched reads; one not in yet is asked for and answered PENDING."""
    context = _ctx(info)
    loaders = context.loaders
    ensure_one_base(since, environment)
    project = await loaders.project_by_id.load(head.project_id)
    assert project is not None
    if since is not None:
        ensure_rc_version(since)
        base = await loaders.candidate.load((project.id, since))
        if base is None:
            raise errors.not_found(errors.RELEASE_NOT_FOUND)
    else:
        assert environment is not None
        found = await _environment_named(info, project, environment)
        if found is None:
            raise errors.not_found(errors.ENVIRONMENT_NOT_FOUND)
        running = await loaders.running_candidate.load(found.id)
        if running is None:
            raise errors.not_found(errors.NOTHING_RUNNING)
        base = running.candidate
    between = Between(project.repo, base, head, paths_of(project))
    ends = {"base": _end(base), "head": _end(head)}
    if identical(between) is not None:
        return ChangeReport(
            status=ReportStatus.READY, **ends, ahead_by=0, diverged=False, stored_id=None, count=0
        )
    summary = await loaders.report.load(report_key(between))
    try:
        ready = complete(summary)
    except errors.DomainError as refused:
        if refused.code is errors.CHANGES_REFUSED:
            await loaders.forget.load(between)
        raise
    if summary is not None and ready:
        return ChangeReport(
            status=ReportStatus.READY,
            **ends,
            ahead_by=summary.ahead_by,
            diverged=summary.diverged,
            stored_id=summary.id,
            count=summary.pull_request_count,
        )
    if summary is None:
        if not context.service.mirror.enabled:
            raise errors.conflict(errors.CHANGES_NEED_GITHUB_APP)
        await loaders.ask.load(between)
    return ChangeReport(
        status=ReportStatus.PENDING,
        **ends,
        ahead_by=None,
        diverged=None,
        stored_id=None,
        count=None,
    )


# --- deployments -----------------------------------------------------------------------


DEPLOYMENTS = "deployment"


def _position(row: Deployment | Release) -> str:
    return str(row.id)


def _deployment_node(row: Deployment) -> DeploymentNode:
    return DeploymentNode(row=row)


async def deployment_connection(
    info: Context,
    shown: DeploymentFilter,
    first: int,
    after: str | None,
) -> Connection[DeploymentNode]:
    page = page_request(first, after, DEPLOYMENTS)
    before = id_after(page)
    rows = await _ctx(info).read(
        lambda s: stored_deployments.deployment_slice(s, shown, before, page.limit)
    )
    return connection(rows, page, DEPLOYMENTS, _position, _deployment_node)


def _filter(
    statuses: list[DeploymentStatus] | None,
    kinds: list[DeploymentKind] | None,
    started_after: datetime | None,
    started_before: datetime | None,
    **scope: object,
) -> DeploymentFilter:
    return DeploymentFilter(
        statuses=tuple(str(s) for s in statuses or ()),
        kinds=tuple(str(k) for k in kinds or ()),
        started_after=started_after,
        started_before=started_before,
        **scope,  # type: ignore[arg-type]
    )


FirstArg = Annotated[int, strawberry.argument(description="Page size, 1 to 100.")]
AfterArg = Annotated[
    str | None, strawberry.argument(description="The endCursor of the page before.")
]
StatusArg = Annotated[
    list[DeploymentStatus] | None, strawberry.argument(description="Any of these statuses.")
]
KindArg = Annotated[
    list[DeploymentKind] | None, strawberry.argument(description="Any of these kinds.")
]
AfterTimeArg = Annotated[
    datetime | None, strawberry.argument(description="Started at or after this time.")
]
BeforeTimeArg = Annotated[
    datetime | None, strawberry.argument(description="Started before this time.")
]


@strawberry.type(name="Deployment", description="One deployment of a candidate to an environment.")
class DeploymentNode:
    row: strawberry.Private[Deployment]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(str(self.row.id))

    @strawberry.field
    def status(self) -> DeploymentStatus:
        return DeploymentStatus(self.row.status)

    @strawberry.field
    def kind(self) -> DeploymentKind:
        return DeploymentKind(self.row.kind)

    @strawberry.field
    def actor(self) -> str | None:
        return self.row.actor

    @strawberry.field(description="When it started (deploy_start_at).")
    def started_at(self) -> datetime:
        return self.row.deploy_start_at

    @strawberry.field(description="When it reached a final status (deploy_end_at).")
    def ended_at(self) -> datetime | None:
        return self.row.deploy_end_at

    @strawberry.field
    def error_message(self) -> str | None:
        return self.row.error_message

    @strawberry.field(
        description="What its run waits for: approvals, or a GitHub environment's rules."
    )
    def waiting_for(self) -> str | None:
        return self.row.waiting_for

    @strawberry.field(description="How many approvals it waits for before its workflow runs.")
    def approvals_required(self) -> int:
        return self.row.approvals_required

    @strawberry.field(description="The approvals given, oldest first.")
    async def approvals(self, info: Context) -> list[ApprovalNode]:
        return approval_nodes(await _ctx(info).loaders.approvals_of.load(self.row.id))

    @strawberry.field
    def workflow_run_url(self) -> str | None:
        return self.row.workflow_run_url

    @strawberry.field
    def release_candidate(self) -> CandidateNode:
        return CandidateNode(row=self.row.release_candidate)

    @strawberry.field(name="from", description="What ran in the environment when it started.")
    def from_(self) -> CandidateNode | None:
        previous = self.row.from_release_candidate
        return CandidateNode(row=previous) if previous is not None else None

    @strawberry.field
    def environment(self, info: Context) -> EnvironmentNode:
        return EnvironmentNode(row=self.row.environment, now=_ctx(info).now)


# --- candidates and releases -----------------------------------------------------------


@strawberry.type(name="ReleaseCandidate", description="A release candidate (an RC version).")
class CandidateNode:
    row: strawberry.Private[ReleaseCandidate]

    @strawberry.field
    def version(self) -> str:
        return self.row.version

    @strawberry.field
    def release_version(self) -> str:
        return self.row.release.version

    @strawberry.field
    def commit(self) -> str:
        return self.row.commit_sha

    @strawberry.field
    def repo(self) -> str:
        return self.row.repo

    @strawberry.field
    def tag(self) -> str | None:
        return self.row.tag

    @strawberry.field
    def build_status(self) -> BuildStatus:
        return BuildStatus(self.row.build_status)

    @strawberry.field
    def build_error(self) -> str | None:
        return self.row.build_error

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field(
        description=(
            "Its bad mark: refused for every deploy and never a rollback target until cleared "
            "(`clearBad`); null when not marked."
        )
    )
    def rejected(self) -> Rejection | None:
        return rejection_of(self.row)

    @strawberry.field(description="Its deployments, newest first.")
    async def deployments(
        self,
        info: Context,
        first: FirstArg = DEFAULT_FIRST,
        after: AfterArg = None,
        status: StatusArg = None,
        kind: KindArg = None,
        started_after: AfterTimeArg = None,
        started_before: BeforeTimeArg = None,
    ) -> Connection[DeploymentNode]:
        shown = _filter(
            status, kind, started_after, started_before, release_candidate_id=self.row.id
        )
        return await deployment_connection(info, shown, first, after)

    @strawberry.field(
        description=(
            "What it ships: give exactly one of `since` (a candidate version) or `environment` "
            "(since what runs there)."
        )
    )
    async def changes(
        self, info: Context, since: str | None = None, environment: str | None = None
    ) -> ChangeReport | None:
        return await change_report(info, self.row, since, environment)


@strawberry.type(name="Release", description="A release: the candidates of one version.")
class ReleaseNode:
    row: strawberry.Private[Release]

    @strawberry.field
    def version(self) -> str:
        return self.row.version

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field(description="Its candidates, highest RC number first.")
    async def candidates(self, info: Context) -> list[CandidateNode]:
        found = await _ctx(info).loaders.candidates_of_release.load(self.row.id)
        return [CandidateNode(row=c) for c in found]


RELEASES = "release"


# --- environments and projects ---------------------------------------------------------


@strawberry.type(description="An environment's manual freeze (PUT …/freeze).")
class Freeze:
    reason: str | None
    by: str | None
    since: datetime
    until: datetime | None


@strawberry.type(name="Environment", description="An environment of a project, as it is now.")
class EnvironmentNode:
    row: strawberry.Private[Environment]
    now: strawberry.Private[datetime]

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def production(self) -> bool:
        return self.row.production

    @strawberry.field
    def url(self) -> str | None:
        return self.row.url

    @strawberry.field
    def deploy_workflow(self) -> str | None:
        return self.row.deploy_workflow

    @strawberry.field
    def auto_deploy(self) -> bool:
        return self.row.auto_deploy

    @strawberry.field(description="Removed from the projects file (history kept).")
    def removed(self) -> bool:
        return self.row.removed_at is not None

    @strawberry.field(description="Manually frozen (`calendarFreeze` says the calendar's).")
    def frozen(self) -> bool:
        return current_freeze(self.row, self.now) is not None

    @strawberry.field(description="The manual freeze.")
    def freeze(self) -> Freeze | None:
        found = current_freeze(self.row, self.now)
        if found is None:
            return None
        return Freeze(reason=found.reason, by=found.by, since=found.since, until=found.until)

    @strawberry.field(description="The calendar window in effect now, and until when.")
    def calendar_freeze(self) -> CalendarFreeze | None:
        return calendar_freeze_of(self.row, self.now)

    @strawberry.field(description="The next calendar window to begin.")
    def next_freeze(self) -> NextFreeze | None:
        return next_freeze_of(self.row, self.now)

    @strawberry.field(description="Its release policy: promotion order, soak, approvals.")
    def policy(self) -> ReleasePolicyNode:
        return policy_node(self.row)

    @strawberry.field(description="The deployment of what runs: its newest success.")
    async def running_deployment(self, info: Context) -> DeploymentNode | None:
        running = await _ctx(info).loaders.running.load(self.row.id)
        return DeploymentNode(row=running) if running is not None else None

    @strawberry.field(description="What runs: the candidate of its newest successful deployment.")
    async def running_candidate(self, info: Context) -> CandidateNode | None:
        running = await _ctx(info).loaders.running_candidate.load(self.row.id)
        return CandidateNode(row=running.candidate) if running is not None else None

    @strawberry.field(description="Since when it runs: when its deployment succeeded.")
    async def running_since(self, info: Context) -> datetime | None:
        running = await _ctx(info).loaders.running_candidate.load(self.row.id)
        return running.since if running is not None else None

    @strawberry.field(description="The newest deployment still under way.")
    async def active_deployment(self, info: Context) -> DeploymentNode | None:
        active = await _ctx(info).loaders.active.load(self.row.id)
        return DeploymentNode(row=active) if active is not None else None

    @strawberry.field(description="Its deployments, newest first.")
    async def deployments(
        self,
        info: Context,
        first: FirstArg = DEFAULT_FIRST,
        after: AfterArg = None,
        status: StatusArg = None,
        kind: KindArg = None,
        started_after: AfterTimeArg = None,
        started_before: BeforeTimeArg = None,
    ) -> Connection[DeploymentNode]:
        shown = _filter(status, kind, started_after, started_before, environment_ids=(self.row.id,))
        return await deployment_connection(info, shown, first, after)

    @strawberry.field
    async def project(self, info: Context) -> ProjectNode:
        return ProjectNode(row=self.row.project)


async def _environment_named(info: Context, project: Project, name: str) -> Environment | None:
    return await _ctx(info).loaders.environment_named.load((project.id, name))


@strawberry.type(name="Project", description="A project of the projects file.")
class ProjectNode:
    row: strawberry.Private[Project]

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def repo(self) -> str:
        return self.row.repo

    @strawberry.field
    def build_workflow(self) -> str | None:
        return self.row.build_workflow

    @strawberry.field(description="Removed from the projects file (history kept).")
    def removed(self) -> bool:
        return self.row.removed_at is not None

    @strawberry.field(description="Its environments, in the projects file's order.")
    async def environments(self, info: Context) -> list[EnvironmentNode]:
        now = _ctx(info).now
        found = await _ctx(info).loaders.environments_of.load(self.row.id)
        return [EnvironmentNode(row=e, now=now) for e in found]

    @strawberry.field(description="One environment by name; null when it has none of that name.")
    async def environment(self, info: Context, name: str) -> EnvironmentNode | None:
        found = await _environment_named(info, self.row, name)
        return EnvironmentNode(row=found, now=_ctx(info).now) if found is not None else None

    @strawberry.field(description="Its releases, newest first.")
    async def releases(
        self, info: Context, first: FirstArg = DEFAULT_FIRST, after: AfterArg = None
    ) -> Connection[ReleaseNode]:
        page = page_request(first, after, RELEASES)
        before = id_after(page)
        rows = await _ctx(info).read(
            lambda s: stored_releases.release_slice(s, self.row.id, before, page.limit)
        )
        return connection(rows, page, RELEASES, _position, lambda r: ReleaseNode(row=r))

    @strawberry.field(
        description=(
            "The release policy's decisions (of all its environments, or of `environment`), "
            "newest first."
        )
    )
    async def audit(
        self,
        info: Context,
        environment: str | None = None,
        first: FirstArg = DEFAULT_FIRST,
        after: AfterArg = None,
    ) -> Connection[AuditEntryNode]:
        page = page_request(first, after, AUDIT)
        environment_id = None
        if environment is not None:
            found = await _environment_named(info, self.row, environment)
            if found is None:
                raise errors.not_found(errors.ENVIRONMENT_NOT_FOUND)
            environment_id = found.id
        return await audit_connection(_ctx(info), self.row.id, environment_id, page)

    @strawberry.field(description="One candidate by version; null when there is none.")
    async def release_candidate(self, info: Context, version: str) -> CandidateNode | None:
        found = await _ctx(info).loaders.candidate.load((self.row.id, version))
        return CandidateNode(row=found) if found is not None else None

    @strawberry.field(
        description="Deployments of all its environments (or of `environment`), newest first."
    )
    async def deployments(
        self,
        info: Context,
        first: FirstArg = DEFAULT_FIRST,
        after: AfterArg = None,
        environment: str | None = None,
        status: StatusArg = None,
        kind: KindArg = None,
        started_after: AfterTimeArg = None,
        started_before: BeforeTimeArg = None,
    ) -> Connection[DeploymentNode]:
        found = await _ctx(info).loaders.environments_of.load(self.row.id)
        ids = tuple(e.id for e in found if environment is None or e.name == environment)
        if environment is not None and not ids:
            raise errors.not_found(errors.ENVIRONMENT_NOT_FOUND)
        if not ids:  # no environment: no deployments (an empty filter would mean "any")
            none: list[Deployment] = []
            page = page_request(first, after, DEPLOYMENTS)
            return connection(none, page, DEPLOYMENTS, _position, _deployment_node)
        shown = _filter(status, kind, started_after, started_before, environment_ids=ids)
        return await deployment_connection(info, shown, first, after)
