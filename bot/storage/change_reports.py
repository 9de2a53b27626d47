"""Stored change reports: found by their two commits and paths, asked for once, filled once."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
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


async def find_reports(
    session: AsyncSession, keys: Sequence[tuple[str, str, str, str]]
) -> list[ChangeReport]:
    """The stored reports of these (repo, base, head, paths digest): one statement for all,
    through the unique index."""
    if not keys:
        return []
    found = await session.scalars(
        select(ChangeReport).where(
            or_(
                *(
                    and_(
                        ChangeReport.repo == repo.lower(),
                        ChangeReport.base_commit == base,
                        ChangeReport.head_commit == head,
                        ChangeReport.paths_digest == digest,
                    )
                    for repo, base, head, digest in keys
                )
            )
        )
    )
    return list(found)
