"""Releases and their candidates: creating an RC, and reading them back."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot import errors
from bot.models import Deployment, Project, Release, ReleaseCandidate
from bot.pages import Page, PageRequest
from bot.projects import find_project
from bot.statuses import BuildStatus
from bot.versions import normalize_commit_sha, parse_rc_version


@dataclass(frozen=True)
class CreatedCandidate:
    candidate: ReleaseCandidate
    created: bool  # False when the same RC at the same commit already existed


async def create_release_candidate(
    session: AsyncSession,
    *,
    project_name: str,
    version: str,
    repo: str,
    commit: str,
    build: bool,
    now: datetime,
    tag: str | None = None,
) -> CreatedCandidate:
    """Create RC `version` at `commit`; the same RC and commit again is accepted as it is.

    With `build` the RC waits for the project's build workflow (`building`); without, it is
    `ready` at once.
    """
    project = await find_project(session, project_name)
    if project.removed_at is not None:
        raise errors.invalid(errors.PROJECT_REMOVED)
    parsed = parse_rc_version(version)
    if parsed is None:
        raise errors.invalid(errors.INVALID_RC_VERSION)
    if repo.lower() != project.repo.lower():
        raise errors.not_found(errors.REPOSITORY_NOT_FOUND)
    sha = normalize_commit_sha(commit)
    if sha is None:
        raise errors.invalid(errors.INVALID_COMMIT)
    if build and project.build_workflow is None:
        raise errors.invalid(errors.NO_BUILD_WORKFLOW)

    # Two requests creating RCs of one project take turns, so neither trips on the other's
    # new release row.
    await session.execute(select(Project.id).where(Project.id == project.id).with_for_update())
    existing = await session.scalar(
        select(ReleaseCandidate).where(
            ReleaseCandidate.project_id == project.id, ReleaseCandidate.version == version
        )
    )
    if existing is not None:
        if existing.commit_sha != sha:
            raise errors.conflict(errors.RC_COMMIT_CONFLICT)
        return CreatedCandidate(existing, created=False)

    release = await session.scalar(
        select(Release).where(Release.project_id == project.id, Release.version == parsed.release)
    )
    if release is None:
        release = Release(project_id=project.id, version=parsed.release, created_at=now)
        session.add(release)
        await session.flush()
    candidate = ReleaseCandidate(
        project_id=project.id,
        release_id=release.id,
        release=release,
        version=version,
        number=parsed.number,
        commit_sha=sha,
        repo=project.repo,
        build_status=BuildStatus.BUILDING if build else BuildStatus.READY,
        tag=tag,
        created_at=now,
    )
    session.add(candidate)
    await session.flush()
    return CreatedCandidate(candidate, created=True)


async def find_release_candidate(
    session: AsyncSession, project: Project, version: str
) -> ReleaseCandidate:
    candidate = await session.scalar(
        select(ReleaseCandidate).where(
            ReleaseCandidate.project_id == project.id, ReleaseCandidate.version == version
        )
    )
    if candidate is None:
        raise errors.not_found(errors.RELEASE_NOT_FOUND)
    return candidate


@dataclass(frozen=True)
class ReleaseWithCandidates:
    release: Release
    candidates: list[ReleaseCandidate]


async def list_releases(
    session: AsyncSession, project_name: str, page: PageRequest
) -> Page[ReleaseWithCandidates]:
    """Releases newest first, each with its candidates, highest RC number first."""
    project = await find_project(session, project_name)
    releases = list(
        await session.scalars(
            select(Release)
            .where(Release.project_id == project.id)
            .order_by(Release.id.desc())
            .offset(page.offset)
            .limit(page.per_page + 1)
        )
    )
    shown = releases[: page.per_page]
    by_release: dict[int, list[ReleaseCandidate]] = defaultdict(list)
    if shown:
        candidates = await session.scalars(
            select(ReleaseCandidate)
            .where(ReleaseCandidate.release_id.in_([r.id for r in shown]))
            .order_by(ReleaseCandidate.number.desc(), ReleaseCandidate.id.desc())
        )
        for candidate in candidates:
            by_release[candidate.release_id].append(candidate)
    items = [ReleaseWithCandidates(r, by_release[r.id]) for r in shown]
    return Page(items=items, has_next=len(releases) > page.per_page)


@dataclass(frozen=True)
class CandidateWithDeployments:
    candidate: ReleaseCandidate
    deployments: list[Deployment]


async def get_release_candidate(
    session: AsyncSession, project_name: str, version: str
) -> CandidateWithDeployments:
    """One RC with every deployment of it, newest first."""
    project = await find_project(session, project_name)
    if parse_rc_version(version) is None:
        raise errors.invalid(errors.INVALID_RC_VERSION)
    candidate = await find_release_candidate(session, project, version)
    deployments = await session.scalars(
        select(Deployment)
        .where(Deployment.release_candidate_id == candidate.id)
        .order_by(Deployment.id.desc())
    )
    return CandidateWithDeployments(candidate, list(deployments))
