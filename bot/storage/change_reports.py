"""Stored change reports: found by their two commits and paths, asked for once, filled once."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.changes import ChangeReport as Report
from bot.domain.changes import Commit, PathFilter, PullRequest
from bot.storage.lookup import dialect_insert
from bot.storage.models import ChangeReport


def paths_digest(paths: PathFilter) -> str:
    return hashlib.sha256(paths.key.encode()).hexdigest()


async def find_report(
    session: AsyncSession, repo: str, base: str, head: str, paths: PathFilter
) -> ChangeReport | None:
    found: ChangeReport | None = await session.scalar(
        select(ChangeReport).where(
            ChangeReport.repo == repo.lower(),
            ChangeReport.base_commit == base,
            ChangeReport.head_commit == head,
            ChangeReport.paths_digest == paths_digest(paths),
        )
    )
    return found


async def ask_for_report(
    session: AsyncSession, repo: str, base: str, head: str, paths: PathFilter, now: datetime
) -> bool:
    """Note that the report is wanted; True when this call is the first to ask (it enqueues
    the fetch), False when it was asked for already (by another request or replica)."""
    insert = dialect_insert(session)
    statement = (
        insert(ChangeReport)
        .values(
            repo=repo.lower(),
            base_commit=base,
            head_commit=head,
            paths_digest=paths_digest(paths),
            paths=list(paths.globs),
            requested_at=now,
            ahead_by=0,
            behind_by=0,
            diverged=False,
            commits=[],
            pull_requests=[],
            github_calls=0,
        )
        .on_conflict_do_nothing()
    )
    result = await session.execute(statement)
    return bool(getattr(result, "rowcount", 0))


async def store_report(
    session: AsyncSession,
    repo: str,
    paths: PathFilter,
    report: Report,
    *,
    github_calls: int,
    now: datetime,
) -> None:
    """The fetched report, filled in once: a report already complete stays as it was."""
    await session.execute(
        update(ChangeReport)
        .where(
            ChangeReport.repo == repo.lower(),
            ChangeReport.base_commit == report.base_commit,
            ChangeReport.head_commit == report.head_commit,
            ChangeReport.paths_digest == paths_digest(paths),
            ChangeReport.completed_at.is_(None),
        )
        .values(
            completed_at=now,
            ahead_by=report.ahead_by,
            behind_by=report.behind_by,
            diverged=report.diverged,
            commits=[asdict(c) for c in report.commits],
            pull_requests=[_pull_request_row(pr) for pr in report.pull_requests],
            github_calls=github_calls,
        )
    )


def report_of(row: ChangeReport) -> Report:
    """A stored, complete report as the domain's value."""
    return Report(
        base_commit=row.base_commit,
        head_commit=row.head_commit,
        ahead_by=row.ahead_by,
        behind_by=row.behind_by,
        diverged=row.diverged,
        commits=tuple(Commit(**c) for c in row.commits),
        pull_requests=tuple(_pull_request_of(pr) for pr in row.pull_requests),
    )


def _pull_request_row(pr: PullRequest) -> dict[str, Any]:
    row = asdict(pr)
    row["merged_at"] = pr.merged_at.isoformat() if pr.merged_at is not None else None
    return row


def _pull_request_of(row: dict[str, Any]) -> PullRequest:
    merged_at = row.get("merged_at")
    return PullRequest(
        number=int(row["number"]),
        title=str(row["title"]),
        author=row.get("author"),
        url=str(row["url"]),
        merged_at=datetime.fromisoformat(merged_at) if merged_at else None,
    )


async def forget_report(session: AsyncSession, report_id: int) -> None:
    """A refused report, once said, is forgotten: the next request asks GitHub again."""
    await session.execute(delete(ChangeReport).where(ChangeReport.id == report_id))


@dataclass(frozen=True)
class ReportSummary:
    """A stored report without its lists: where it stands, and how many pull requests and
    commits it holds (counted by the database, the lists neither sent nor decoded)."""

    id: int
    repo: str
    base_commit: str
    head_commit: str
    paths_digest: str
    completed_at: datetime | None
    error: str | None
    ahead_by: int
    diverged: bool
    pull_request_count: int
    commit_count: int


async def find_report_summaries(
    session: AsyncSession, keys: Sequence[tuple[str, str, str, str]]
) -> list[ReportSummary]:
    """The summaries of the stored reports of these (repo, base, head, paths digest): one
    statement for all, a seek of the unique index per repository and base. A query over 50
    candidates that asks only whether their reports are in and how many pull requests each
    ships reads no list.

    `IN` per column, not 50 ORed (repo, base, head, digest): the statement is the same for any
    number of keys (SQLAlchemy builds and caches it once; building the OR cost more than
    running it), and still seeks the index. It may find a few reports of other pairs of the
    same commits, dropped here."""
    if not keys:
        return []
    wanted = {(repo.lower(), base, head, digest) for repo, base, head, digest in keys}
    found = await session.execute(
        select(
            ChangeReport.id,
            ChangeReport.repo,
            ChangeReport.base_commit,
            ChangeReport.head_commit,
            ChangeReport.paths_digest,
            ChangeReport.completed_at,
            ChangeReport.error,
            ChangeReport.ahead_by,
            ChangeReport.diverged,
            func.coalesce(func.json_array_length(ChangeReport.pull_requests), 0),
            func.coalesce(func.json_array_length(ChangeReport.commits), 0),
        ).where(
            ChangeReport.repo.in_(sorted({key[0] for key in wanted})),
            ChangeReport.base_commit.in_(sorted({key[1] for key in wanted})),
            ChangeReport.head_commit.in_(sorted({key[2] for key in wanted})),
        )
    )
    summaries = (ReportSummary(*row) for row in found.all())
    return [
        summary
        for summary in summaries
        if (summary.repo, summary.base_commit, summary.head_commit, summary.paths_digest) in wanted
    ]


async def reports_by_id(session: AsyncSession, ids: Sequence[int]) -> list[ChangeReport]:
    """Stored reports, lists and all, by id: one statement."""
    if not ids:
        return []
    found = await session.scalars(select(ChangeReport).where(ChangeReport.id.in_(ids)))
    return list(found)


async def pull_request_lists(
    session: AsyncSession, ids: Sequence[int]
) -> dict[int, tuple[PullRequest, ...]]:
    """The pull requests of stored reports, by id: one statement, the commits left unread (a
    page that shows a report's pull requests only counts its commits)."""
    if not ids:
        return {}
    found = await session.execute(
        select(ChangeReport.id, ChangeReport.pull_requests).where(ChangeReport.id.in_(ids))
    )
    return {id_: tuple(_pull_request_of(pr) for pr in listed) for id_, listed in found}
