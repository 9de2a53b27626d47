"""What the pull-request note and GitHub Release tests share: candidates in the database, and a
deployment success told to bot/app/shipped.py as the deployment-success path tells it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.releases import create_release_candidate
from bot.app.shipped import plan_release, record_shipped
from bot.domain.changes import Commit, PullRequest
from bot.storage.db import Database
from bot.storage.models import Environment, Project, ReleaseCandidate
from bot.storage.projects import find_project
from tests.conftest import SHA_A

BACKEND = "acme/backend"


def pull_request(number: int, title: str = "", author: str | None = "octocat") -> PullRequest:
    return PullRequest(
        number=number,
        title=title or f"Change {number}",
        author=author,
        url=f"https://github.com/{BACKEND}/pull/{number}",
        merged_at=datetime(2026, 12, 1, 12, 0, tzinfo=UTC),
    )


def commit(sha: str, message: str) -> Commit:
    return Commit(
        sha=sha, message=message, author="Ada", url=f"https://github.com/{BACKEND}/commit/{sha}"
    )


async def make_candidate(
    db: Database,
    version: str,
    now: datetime,
    *,
    tag: str | None = None,
    project: str = "Backend",
    commit_sha: str = SHA_A,
) -> None:
    async with db.write() as session:
        found = await find_project(session, project)
        await create_release_candidate(
            session, found, version=version, repo=found.repo, commit=commit_sha, build=False,
            now=now, tag=tag,
        )  # fmt: skip


async def shipped(
    db: Database,
    environment: str,
    version: str,
    now: datetime,
    *,
    came_in: Sequence[PullRequest] = (),
    went_out: Sequence[PullRequest] = (),
    project: str = "Backend",
    comments_on: bool | None = None,
) -> None:
    """`version` succeeded in `environment` at `now`, bringing `came_in` and taking
    `went_out` out; `comments_on` sets the project's switch first, as a sync would."""
    async with db.write() as session:
        found = await find_project(session, project)
        if comments_on is not None:
            found.pull_request_comments = comments_on
        env = await session.scalar(
            select(Environment).where(
                Environment.project_id == found.id, Environment.name == environment
            )
        )
        assert env is not None
        candidate = await _candidate(session, found, version)
        await record_shipped(
            session, project=found, environment=env, candidate=candidate,
            came_in=came_in, went_out=went_out, now=now,
        )  # fmt: skip


async def released(
    db: Database,
    version: str,
    now: datetime,
    *,
    previous: str | None = None,
    pull_requests: Sequence[PullRequest] = (),
    commits: Sequence[Commit] = (),
    project: str = "Backend",
    releases_on: bool | None = None,
) -> None:
    """`version` first succeeded in production: plan its GitHub Release."""
    async with db.write() as session:
        found = await find_project(session, project)
        if releases_on is not None:
            found.github_releases = releases_on
        candidate = await _candidate(session, found, version)
        before = await _candidate(session, found, previous) if previous else None
        await plan_release(
            session, project=found, candidate=candidate, previous=before,
            pull_requests=pull_requests, commits=commits, now=now,
        )  # fmt: skip


async def _candidate(session: AsyncSession, project: Project, version: str) -> ReleaseCandidate:
    found = await session.scalar(
        select(ReleaseCandidate).where(
            ReleaseCandidate.project_id == project.id, ReleaseCandidate.version == version
        )
    )
    assert found is not None
    return found
