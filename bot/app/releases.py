"""Releases and their candidates: creating an RC, and reading them back."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import contains_eager

from bot.core import errors
from bot.core.pages import Page, PageRequest
from bot.domain.statuses import BuildStatus
from bot.domain.versions import normalize_commit_sha, parse_rc_version
from bot.storage.models import Deployment, Project, Release, ReleaseCandidate
from bot.storage.projects import find_project


@dataclass(frozen=True)
class CreatedCandidate:
    candidate: ReleaseCandidate
    created: bool  # False when the same RC at the same commit already existed


# Built once (statements cost more to build than to run). An RC's release is the one its
# version names, so the RC, if any, is found through its release.
_LOCK_PROJECT = select(Project.id).where(Project.id == bindparam("project_id")).with_for_update()
_RELEASE_AND_CANDIDATE = (
    select(Release, ReleaseCandidate)
    .outerjoin(
        ReleaseCandidate,
        (ReleaseCandidate.release_id == Release.id)
        & (ReleaseCandidate.version == bindparam("version")),
    )
    .where(Release.project_id == bindparam("project_id"), Release.version == bindparam("release"))
    # The RC's release is the row beside it (its own joined load would be an inner join).
    .options(contains_eager(ReleaseCandidate.release))
)


async def create_release_candidate(
    session: AsyncSession,
    project: Project,
    *,
    version: str,
    repo: str,
    commit: str,
    build: bool,
    now: datetime,
    tag: str | None = None,
) -> CreatedCandidate:
    """Create RC `version` of `project` at `commit`; the same RC and commit again is accepted
    as it is.

    With `build` the RC waits for the project's build workflow (`building`); without, it is
    `ready` at once. Runs on the tag path of every webhook, hence few statements: the project
    lock (PostgreSQL), one look-up of the release and the RC together, one flush.
    """
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
    # new release row. (SQLite's write transaction holds the only write lock already.)
    if session.get_bind().dialect.name != "sqlite":
        await session.execute(_LOCK_PROJECT, {"project_id": project.id})
    found = (
        await session.execute(
            _RELEASE_AND_CANDIDATE,
            {"project_id": project.id, "release": parsed.release, "version": version},
        )
    ).first()
    release: Release | None = found[0] if found is not None else None
    existing: ReleaseCandidate | None = found[1] if found is not None else None
    if existing is not None:
        if existing.commit_sha != sha:
            raise errors.conflict(errors.RC_COMMIT_CONFLICT)
        return CreatedCandidate(existing, created=False)

    if release is None:
        release = Release(project_id=project.id, version=parsed.release, created_at=now)
        session.add(release)
    candidate = ReleaseCandidate(
        project_id=project.id,
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
    await session.flush()  # one flush: the release (if new), then the RC
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
