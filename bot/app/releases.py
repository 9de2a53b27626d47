"""Releases and their candidates: creating an RC, and reading them back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.core.pages import Page, PageRequest
from bot.domain.candidates import ensure_rc_version, ensure_same_commit, new_candidate
from bot.storage import releases as stored
from bot.storage.batch_reads import BatchReads
from bot.storage.deployments import deployments_of_candidate
from bot.storage.models import Deployment, Project, Release, ReleaseCandidate
from bot.storage.projects import find_project


@dataclass(frozen=True)
class CreatedCandidate:
    candidate: ReleaseCandidate
    created: bool  # False when the same RC at the same commit already existed


@dataclass(frozen=True)
class ReleaseWithCandidates:
    release: Release
    candidates: list[ReleaseCandidate]


@dataclass(frozen=True)
class CandidateWithDeployments:
    candidate: ReleaseCandidate
    deployments: list[Deployment]


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
    reads: BatchReads | None = None,
) -> CreatedCandidate:
    """Create RC `version` of `project` at `commit`; the same RC and commit again is accepted
    as it is (`bot.domain.candidates.new_candidate` checks the request).

    Runs on the tag path of every webhook, hence few statements: the project lock
    (PostgreSQL), one look-up of the release and the RC together, one flush. With a batch's
    `reads` (bot/storage/batch_reads.py), none of its own: the lock and the look-up are the
    batch's, and the new rows are written at the transaction's next flush (the RC has no id
    until then).
    """
    new = new_candidate(project, version=version, repo=repo, commit=commit, build=build)
    await stored.lock_project(session, project, reads)
    release, existing = await stored.release_and_candidate(session, project, new, reads)
    if existing is not None:
        ensure_same_commit(existing, new)
        return CreatedCandidate(existing, created=False)
    candidate = await stored.insert_candidate(
        session, project, release, new, tag=tag, now=now, reads=reads
    )
    return CreatedCandidate(candidate, created=True)


async def list_releases(
    session: AsyncSession, project_name: str, page: PageRequest
) -> Page[ReleaseWithCandidates]:
    """Releases newest first, each with its candidates, highest RC number first."""
    project = await find_project(session, project_name)
    releases = await stored.release_page(session, project, page)
    by_release = await stored.candidates_of(session, releases.items)
    return releases.map(lambda release: ReleaseWithCandidates(release, by_release[release.id]))


async def get_release_candidate(
    session: AsyncSession, project_name: str, version: str
) -> CandidateWithDeployments:
    """One RC with every deployment of it, newest first."""
    project = await find_project(session, project_name)
    ensure_rc_version(version)
    candidate = await stored.find_release_candidate(session, project, version)
    return CandidateWithDeployments(candidate, await deployments_of_candidate(session, candidate))
