"""What a candidate ships: its change report since another candidate, or since what runs in an
environment.

A report between two commits never changes: the first request asks for it (a row, and the
fetch through the outbox, bot/github/outbound/change_reports.py), and every later one reads it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import Mirror
from bot.core import errors
from bot.core.clock import Clock
from bot.domain.candidates import ensure_rc_version
from bot.domain.changes import ChangeReport, PathFilter
from bot.storage import change_reports as stored
from bot.storage.db import Database
from bot.storage.deployments import running_release_candidate
from bot.storage.models import ChangeReport as StoredReport
from bot.storage.models import Project, ReleaseCandidate
from bot.storage.outbox import Action, change_report_key, enqueue
from bot.storage.projects import find_environment, find_project
from bot.storage.releases import find_release_candidate

POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Between:
    """The two candidates a report is about, and the project's paths."""

    repo: str
    base: ReleaseCandidate
    head: ReleaseCandidate
    paths: PathFilter


@dataclass(frozen=True)
class Answer:
    between: Between
    report: ChangeReport | None  # None: being fetched


def ensure_one_base(since: str | None, environment: str | None) -> None:
    """A report is since a candidate or since what runs in an environment: one of them."""
    if (since is None) == (environment is None):
        raise errors.invalid(errors.CHANGES_NEED_ONE_BASE)


def paths_of(project: Project) -> PathFilter:
    return PathFilter(tuple(project.paths or ()))


async def between(
    session: AsyncSession,
    *,
    project_name: str,
    version: str,
    since: str | None,
    environment_name: str | None,
) -> Between:
    """The candidates a report request names, checked in the order the API documents."""
    ensure_one_base(since, environment_name)
    project = await find_project(session, project_name)
    ensure_rc_version(version)
    head = await find_release_candidate(session, project, version)
    if since is not None:
        ensure_rc_version(since)
        base = await find_release_candidate(session, project, since)
    else:
        assert environment_name is not None
        environment = await find_environment(session, project_name, environment_name)
        running = await running_release_candidate(session, environment)
        if running is None:
            raise errors.not_found(errors.NOTHING_RUNNING)
        base = running
    return Between(project.repo, base, head, paths_of(project))


def identical(between: Between) -> ChangeReport | None:
    """The report of a candidate against one at the same commit: nothing, without asking."""
    if between.base.commit_sha.lower() != between.head.commit_sha.lower():
        return None
    commit = between.head.commit_sha.lower()
    return ChangeReport(commit, commit, ahead_by=0, behind_by=0, diverged=False)


async def stored_report(session: AsyncSession, between: Between) -> StoredReport | None:
    return await stored.find_report(
        session,
        between.repo,
        between.base.commit_sha.lower(),
        between.head.commit_sha.lower(),
        between.paths,
    )


class StoredState(Protocol):
    """Where a stored report stands: a row, or its summary (bot/storage/change_reports.py)."""

    @property
    def completed_at(self) -> datetime | None: ...

    @property
    def error(self) -> str | None: ...


def complete(found: StoredState | None) -> bool:
    """Whether the stored report is in; refused by GitHub raises CHANGES_REFUSED (said once,
    see `forget_refused`)."""
    if found is None or found.completed_at is None:
        return False
    if found.error is not None:
        raise errors.conflict(errors.CHANGES_REFUSED)
    return True


def finished(found: StoredReport | None) -> ChangeReport | None:
    """The stored report once complete (`complete`)."""
    return stored.report_of(found) if found is not None and complete(found) else None


async def ask_for(session: AsyncSession, mirror: Mirror, between: Between, now: datetime) -> None:
    """Ask for the report: the row that says it is wanted, and its fetch, enqueued by
    whichever request asked first. Without the GitHub App nothing can fetch it."""
    if not mirror.enabled:
        raise errors.conflict(errors.CHANGES_NEED_GITHUB_APP)
    base, head = between.base.commit_sha.lower(), between.head.commit_sha.lower()
    if not await stored.ask_for_report(session, between.repo, base, head, between.paths, now):
        return
    row = await stored.find_report(session, between.repo, base, head, between.paths)
    assert row is not None
    await enqueue(
        session,
        action=Action.FETCH_CHANGE_REPORT,
        ordering_key=change_report_key(row.id),
        repo=between.repo,
        payload={"report_id": row.id, "base": base, "head": head, "paths": list(row.paths)},
        now=now,
    )


async def change_report(
    db: Database,
    mirror: Mirror,
    *,
    project_name: str,
    version: str,
    since: str | None,
    environment_name: str | None,
    clock: Clock,
    wait: float,
) -> Answer:
    """The report, from the database when it was made before; otherwise asked for and waited
    on up to `wait` seconds (the answer's report is None if it is not in by then)."""
    async with db.read() as session:
        found = await between(
            session,
            project_name=project_name,
            version=version,
            since=since,
            environment_name=environment_name,
        )
    try:
        return Answer(found, await _report(db, mirror, found, clock, wait))
    except errors.DomainError as exc:
        if exc.code is errors.CHANGES_REFUSED:
            await forget_refused(db, [found])
        raise


async def _report(
    db: Database,
    mirror: Mirror,
    found: Between,
    clock: Clock,
    wait: float,
) -> ChangeReport | None:
    same = identical(found)
    if same is not None:
        return same
    async with db.read() as session:
        ready = finished(await stored_report(session, found))
    if ready is not None:
        return ready
    async with db.write() as session:
        row = await stored_report(session, found)
        ready = finished(row)
        if ready is None and row is None:
            await ask_for(session, mirror, found, clock())
    if ready is not None:
        return ready
    loop = asyncio.get_running_loop()
    until = loop.time() + wait
    while loop.time() < until:
        await asyncio.sleep(POLL_SECONDS)
        async with db.read() as session:
            ready = finished(await stored_report(session, found))
        if ready is not None:
            return ready
    return None


async def forget_refused(db: Database, refused: Sequence[Between]) -> None:
    """Reports GitHub refused, once said, are forgotten (in one transaction of their own): the
    next request asks GitHub again. REST's `change_report` and GraphQL's `changes` both call
    this after answering CHANGES_REFUSED."""
    async with db.write() as session:
        await forget_refused_in(session, refused)


async def forget_refused_in(session: AsyncSession, refused: Sequence[Between]) -> None:
    """`forget_refused` in the caller's write transaction (a GraphQL mutation's)."""
    for found in refused:
        row = await stored_report(session, found)
        if row is not None and row.error is not None:
            await stored.forget_report(session, row.id)


def report_key(found: Between) -> tuple[str, str, str, str]:
    """What a stored report is found by: (repo, base commit, head commit, paths digest)."""
    return (
        found.repo.lower(),
        found.base.commit_sha.lower(),
        found.head.commit_sha.lower(),
        stored.paths_digest(found.paths),
    )


async def ask_for_reports(
    db: Database, mirror: Mirror, wanted: list[Between], now: datetime
) -> None:
    """Ask for several reports in one write transaction, waiting for none: a query over many
    candidates (GraphQL's `changes`) answers those not in yet as pending."""
    async with db.write() as session:
        await ask_for_reports_in(session, mirror, wanted, now)


async def ask_for_reports_in(
    session: AsyncSession, mirror: Mirror, wanted: list[Between], now: datetime
) -> None:
    """`ask_for_reports` in the caller's write transaction (a GraphQL mutation's: a second
    write transaction beside it would wait on it for ever on SQLite)."""
    for found in wanted:
        await ask_for(session, mirror, found, now)
