"""Fetching a change report from GitHub: the commits from one candidate to another, and the
pull requests they were merged in.

The calls, for a range of N commits (bench/changes.py measures them):
- the comparison, `GET /compare/{base}...{head}`, 100 commits a page: ceil(N / 100) calls;
- with a project's `paths:`, each commit's changed files, `GET /commits/{sha}`: N calls
  (GitHub lists no files per commit in a comparison);
- the merged pull requests, `GET /pulls?state=closed&sort=updated&direction=desc`, 100 a page,
  until they were last updated before the range's oldest commit: one call per 100 pull
  requests closed since, about ceil(N / 100) for a branch where each PR is one commit;
  each PR's merge commit in the range places the PR, and for a true merge the commits it
  brought in (`attribute_commits`);
- `GET /commits/{sha}/pulls` only for the commits that listing could not place (pushed
  straight to the branch, or the earlier commits of a rebase merge).
That is the cheapest REST means: one call per commit (`/commits/{sha}/pulls` for each) costs
N calls where this costs about N / 50. GraphQL's `associatedPullRequests` would cost about
N / 100 points, but needs a second API (and a fake GitHub playing GraphQL) for a factor of
two; docs/change-reports.md says more.

A report's calls are bounded in time: an attempt that runs out of its share of the outbox
lease stops, keeps what the per-commit calls found in the item's payload, and the worker takes
it again at once (`CheckAgain`), so a 1,000-commit range with a monorepo filter goes through
in a few attempts without holding a lease past its end. Rate limits and outages are the
client's and the worker's, as for every other call.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import Mirror
from bot.domain.changes import (
    ChangeReport,
    MergedPullRequest,
    PathFilter,
    PullRequest,
    RangeCommit,
    attribute_commits,
    commits_that_count,
    is_diverged,
    oldest_listing_needed,
    pull_requests_in_order,
)
from bot.github import endpoints
from bot.github.history import (
    changed_files,
    read_merged,
    read_pull_request,
    read_range_commit,
    updated_at,
)
from bot.github.outbound.effects import (
    CheckAgain,
    EffectContext,
    Recorder,
    effect,
    on_refusal,
)
from bot.storage.change_reports import store_report
from bot.storage.models import ChangeReport as StoredReport
from bot.storage.outbox import Action, ClaimedItem

log = logging.getLogger(__name__)

PAGE = 100
# Per-commit calls in flight at once for one report (GitHub's secondary limits allow 100 for
# the whole installation; the worker runs other items beside it).
CONCURRENCY = 8
# A pull request merged into the range was updated at or after its merge commit; GitHub's
# clocks agree, but a committer date comes from git: this much slack on where the listing stops.
LISTING_SLACK = timedelta(hours=1)
# The merged-PR listing never reads more than this many pages beyond what the range's size
# suggests (a repository where old pull requests are updated all the time); what it leaves
# unplaced is asked commit by commit.
EXTRA_LISTING_PAGES = 3
# The share of a delivery's time one attempt may spend before it stops and is taken again.
BUDGET_SHARE = 0.6


class OutOfTime(Exception):
    def __init__(self, progress: dict[str, Any], done: int, total: int) -> None:
        super().__init__(f"{done} of {total} commits read")
        self.progress = progress


@dataclass
class ReportFetch:
    """One attempt at a report. `progress` holds what per-commit calls found (whether a commit
    touches the paths; the PR a commit belongs to), kept between attempts."""

    call: Callable[..., Awaitable[Any]]  # an endpoints function, bound to client and repo
    repo: str
    base: str
    head: str
    paths: PathFilter
    deadline: float  # loop time
    progress: dict[str, Any] = field(default_factory=dict)
    calls: int = 0

    async def report(self) -> ChangeReport:
        first, commits = await self._compared()
        status = str(first.get("status", ""))
        ahead_by = int(first.get("ahead_by") or 0)
        behind_by = int(first.get("behind_by") or 0)
        if is_diverged(status):
            return ChangeReport(self.base, self.head, ahead_by, behind_by, diverged=True)
        counted = commits_that_count(commits, await self._touches(commits), self.paths)
        pull_requests = await self._pull_requests(commits, counted)
        return ChangeReport(
            self.base,
            self.head,
            ahead_by,
            behind_by,
            diverged=False,
            commits=tuple(c.commit for c in counted),
            pull_requests=tuple(pull_requests),
        )

    async def _compared(self) -> tuple[dict[str, Any], list[RangeCommit]]:
        url: str | None = None
        first: dict[str, Any] | None = None
        commits: list[RangeCommit] = []
        while True:
            page = await self._get(
                endpoints.compare_commits, base=self.base, head=self.head, per_page=PAGE, url=url
            )
            first = first or page.data
            commits.extend(read_range_commit(c) for c in page.data.get("commits") or ())
            url = page.next_url
            if url is None:
                assert first is not None
                return first, commits

    async def _touches(self, commits: list[RangeCommit]) -> dict[str, bool]:
        """Whether each commit touches the paths; kept between attempts."""
        if not self.paths.active:
            return {}
        touches: dict[str, bool] = self.progress.setdefault("touches", {})

        async def read(sha: str) -> None:
            touches[sha] = await self._commit_touches(sha)

        await self._each([c.commit.sha for c in commits if c.commit.sha not in touches], read)
        return touches

    async def _commit_touches(self, sha: str) -> bool:
        url: str | None = None
        while True:
            page = await self._get(endpoints.get_commit, sha=sha, url=url)
            if self.paths.touches(changed_files(page.data)):
                return True
            url = page.next_url
            if url is None:
                return False

    async def _pull_requests(
        self, commits: list[RangeCommit], counted: list[RangeCommit]
    ) -> list[PullRequest]:
        if not counted:
            return []
        merged = await self._merged_since(oldest_listing_needed(commits), len(commits))
        placed = attribute_commits(commits, counted, merged)
        found: dict[str, Any] = self.progress.setdefault("pulls", {})

        async def ask(sha: str) -> None:
            listed = await self._get(endpoints.list_commit_pull_requests, sha=sha)
            merged_ones = [pr for pr in listed if pr.get("merged_at")]
            found[sha] = merged_ones[0] if merged_ones else None

        await self._each([sha for sha in placed.unplaced if sha not in found], ask)
        asked = [read_pull_request(found[sha]) for sha in placed.unplaced if found.get(sha)]
        return pull_requests_in_order([*placed.by_commit.values(), *asked])

    async def _merged_since(self, oldest: datetime | None, size: int) -> list[MergedPullRequest]:
        stop = oldest - LISTING_SLACK if oldest is not None else None
        most_pages = math.ceil(size / PAGE) + EXTRA_LISTING_PAGES
        merged: list[MergedPullRequest] = []
        url: str | None = None
        for _ in range(most_pages):
            page = await self._get(endpoints.list_closed_pull_requests, per_page=PAGE, url=url)
            for found in page.data:
                one = read_merged(found)
                if one is not None:
                    merged.append(one)
            last = updated_at(page.data[-1]) if page.data else None
            url = page.next_url
            if url is None or (stop is not None and last is not None and last < stop):
                break
        return merged

    async def _each(self, shas: list[str], one: Callable[[str], Awaitable[None]]) -> None:
        """`one` for each commit, a few at a time, until the attempt's time is up."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(CONCURRENCY)
        left = list(shas)

        async def guarded(sha: str) -> None:
            async with gate:
                if loop.time() > self.deadline:
                    return
                await one(sha)
                left.remove(sha)

        await asyncio.gather(*(guarded(sha) for sha in shas))
        if left:
            raise OutOfTime(self.progress, len(shas) - len(left), len(shas))

    async def _get(self, endpoint: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        self.calls += 1
        return await self.call(endpoint, **kwargs)


def report_fetch(
    ctx: EffectContext,
    repo: str,
    base: str,
    head: str,
    paths: PathFilter,
    progress: dict[str, Any] | None = None,
) -> ReportFetch:
    """A fetch through the item's installation, within this attempt's share of its time."""

    async def call(endpoint: Callable[..., Awaitable[Any]], **kwargs: Any) -> Any:
        return await endpoint(ctx.client, ctx.installation_id, repo, **kwargs)

    budget = ctx.time_budget * BUDGET_SHARE
    return ReportFetch(
        call=call,
        repo=repo,
        base=base,
        head=head,
        paths=paths,
        deadline=asyncio.get_running_loop().time() + budget,
        progress=dict(progress or {}),
    )


def fetch_for(ctx: EffectContext, item: ClaimedItem) -> ReportFetch:
    payload = item.payload
    fetch = report_fetch(
        ctx,
        item.repo,
        str(payload["base"]),
        str(payload["head"]),
        PathFilter(tuple(payload.get("paths") or ())),
        payload.get("progress"),
    )
    fetch.calls = int(payload.get("calls") or 0)
    return fetch


@effect(Action.FETCH_CHANGE_REPORT)
async def fetch_change_report(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    fetch = fetch_for(ctx, item)
    try:
        report = await fetch.report()
    except OutOfTime as exc:
        payload = {**item.payload, "progress": exc.progress, "calls": fetch.calls}
        raise CheckAgain(f"change report: {exc}", after=0, payload=payload) from None
    log.info(
        "change report %s...%s: %d commits, %d pull requests, %d GitHub calls",
        fetch.base[:12],
        fetch.head[:12],
        len(report.commits),
        len(report.pull_requests),
        fetch.calls,
    )

    async def record(session: AsyncSession) -> None:
        await store_report(
            session, item.repo, fetch.paths, report, github_calls=fetch.calls, now=ctx.clock()
        )

    return record


@on_refusal(Action.FETCH_CHANGE_REPORT)
async def report_refused(
    session: AsyncSession, mirror: Mirror, item: ClaimedItem, reason: str, now: datetime
) -> None:
    """GitHub refused (a commit it does not know, a permission the App lacks): the waiting
    report says why, once; whoever asks after that asks again (bot/app/changes.py)."""
    await session.execute(
        update(StoredReport)
        .where(StoredReport.id == item.payload["report_id"], StoredReport.completed_at.is_(None))
        .values(error=f"GitHub refused: {reason}"[:2000], completed_at=now)
    )
