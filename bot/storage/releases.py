"""The queries behind releases and their candidates."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import contains_eager

from bot.core import errors
from bot.core.pages import Page, PageRequest
from bot.domain.candidates import NewCandidate
from bot.domain.statuses import BuildStatus
from bot.domain.versions import RcVersion
from bot.storage.batch_reads import BatchReads
from bot.storage.lookup import inserted, one_or_not_found, page_of
from bot.storage.models import Project, Release, ReleaseCandidate

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


async def lock_project(
    session: AsyncSession, project: Project, reads: BatchReads | None = None
) -> None:
    """Two requests creating RCs of one project take turns, so neither trips on the other's
    new release row. (SQLite's write transaction holds the only write lock already.) With
    `reads`, once per batch."""
    if reads is not None:
        if project.id in reads.locked:
            return
        reads.locked.add(project.id)
    if session.get_bind().dialect.name != "sqlite":
        await session.execute(_LOCK_PROJECT, {"project_id": project.id})


async def release_and_candidate(
    session: AsyncSession, project: Project, new: NewCandidate, reads: BatchReads | None = None
) -> tuple[Release | None, ReleaseCandidate | None]:
    """The release an RC version names and the RC itself, each None when not made yet: one
    look-up of both, none when the batch's `reads` know them."""
    version = new.version
    release_key, candidate_key = (project.id, version.release), (project.id, version.text)
    if reads is not None and reads.knows(project.id, version.release, version.text):
        return reads.releases[release_key], reads.candidates[candidate_key]
    found = (
        await session.execute(
            _RELEASE_AND_CANDIDATE,
            {"project_id": project.id, "release": version.release, "version": version.text},
        )
    ).first()
    release, candidate = (None, None) if found is None else (found[0], found[1])
    if reads is not None:
        reads.releases[release_key] = release
        reads.candidates[candidate_key] = candidate
    return release, candidate


async def read_candidates(
    session: AsyncSession, project: Project, versions: Collection[RcVersion], reads: BatchReads
) -> None:
    """Lock the project, then read into `reads`, in one query, the releases and RCs `versions`
    name that `reads` does not know yet (a batch's tags of the project)."""
    unknown = [v for v in versions if not reads.knows(project.id, v.release, v.text)]
    if not unknown:
        return
    await lock_project(session, project, reads)
    names = {v.release for v in unknown}
    texts = {v.text for v in unknown}
    for release in names:
        reads.releases[(project.id, release)] = None
    for text in texts:
        reads.candidates[(project.id, text)] = None
    query = (
        select(Release, ReleaseCandidate)
        .outerjoin(
            ReleaseCandidate,
            (ReleaseCandidate.release_id == Release.id) & ReleaseCandidate.version.in_(texts),
        )
        .where(Release.project_id == project.id, Release.version.in_(names))
        .options(contains_eager(ReleaseCandidate.release))
    )
    for found, candidate in await session.execute(query):
        reads.releases[(project.id, found.version)] = found
        if candidate is not None:
            reads.candidates[(project.id, candidate.version)] = candidate


async def insert_candidate(
    session: AsyncSession,
    project: Project,
    release: Release | None,
    new: NewCandidate,
    *,
    tag: str | None,
    now: datetime,
    reads: BatchReads | None = None,
) -> ReleaseCandidate:
    """The RC, and its release when it is the first of it: one flush for both. With the
    batch's `reads`, no flush: the transaction's next one writes them, a batch's RCs in one
    INSERT per table (until then the RC has no id)."""
    if release is None:
        release = Release(project_id=project.id, version=new.version.release, created_at=now)
        session.add(release)
    candidate = ReleaseCandidate(
        project_id=project.id,
        release=release,
        version=new.version.text,
        number=new.version.number,
        commit_sha=new.commit_sha,
        repo=project.repo,
        build_status=new.build_status,
        tag=tag,
        created_at=now,
    )
    if reads is None:
        return await inserted(session, candidate)
    session.add(candidate)
    reads.made(candidate, release)
    return candidate


async def find_release_candidate(
    session: AsyncSession, project: Project, version: str, *, lock: bool = False
) -> ReleaseCandidate:
    """The project's RC `version`; with `lock`, its row locked for a change (PostgreSQL)."""
    of_project = ReleaseCandidate.project_id == project.id
    query = select(ReleaseCandidate).where(of_project, ReleaseCandidate.version == version)
    if lock:
        query = query.with_for_update(of=ReleaseCandidate)
    return await one_or_not_found(session, query, errors.RELEASE_NOT_FOUND)


async def release_page(session: AsyncSession, project: Project, page: PageRequest) -> Page[Release]:
    """Releases of the project, newest first."""
    newest_first = select(Release).where(Release.project_id == project.id)
    return await page_of(session, newest_first.order_by(Release.id.desc()), page)


async def candidates_of(
    session: AsyncSession, releases: Sequence[Release]
) -> dict[int, list[ReleaseCandidate]]:
    """The RCs of each release (by release id), highest RC number first."""
    by_release: dict[int, list[ReleaseCandidate]] = defaultdict(list)
    if not releases:
        return by_release
    candidates = await session.scalars(
        select(ReleaseCandidate)
        .where(ReleaseCandidate.release_id.in_([r.id for r in releases]))
        .order_by(ReleaseCandidate.number.desc(), ReleaseCandidate.id.desc())
    )
    for candidate in candidates:
        by_release[candidate.release_id].append(candidate)
    return by_release


@dataclass(frozen=True)
class Building:
    """A candidate whose build is under way, with what its timeout needs."""

    candidate_id: int
    created_at: datetime
    project: str
    timeout_minutes: int


async def candidates_building(session: AsyncSession) -> list[Building]:
    rows = await session.execute(
        select(ReleaseCandidate.id, ReleaseCandidate.created_at)
        .add_columns(Project.name, Project.build_timeout_minutes)
        .join(Project, Project.id == ReleaseCandidate.project_id)
        .where(ReleaseCandidate.build_status == BuildStatus.BUILDING)
    )
    return [Building(*row) for row in rows]


async def locked_candidate(session: AsyncSession, candidate_id: int) -> ReleaseCandidate | None:
    """The candidate, locked as a workflow_run event locks it: one of the two finishes the
    build."""
    found: ReleaseCandidate | None = await session.scalar(
        select(ReleaseCandidate)
        .where(ReleaseCandidate.id == candidate_id)
        .with_for_update(of=ReleaseCandidate)
    )
    return found


# --- batched reads for the GraphQL face (api/graphql/): one statement per kind of object ---


async def release_slice(
    session: AsyncSession, project_id: int, before_id: int | None, limit: int
) -> list[Release]:
    """Releases of the project, newest first, older than `before_id` (keyset), at most
    `limit`."""
    query = select(Release).where(Release.project_id == project_id)
    if before_id is not None:
        query = query.where(Release.id < before_id)
    return list(await session.scalars(query.order_by(Release.id.desc()).limit(limit)))


async def candidates_of_releases(
    session: AsyncSession, release_ids: Sequence[int]
) -> list[ReleaseCandidate]:
    """The RCs of these releases, highest RC number first."""
    found = await session.scalars(
        select(ReleaseCandidate)
        .where(ReleaseCandidate.release_id.in_(release_ids))
        .order_by(ReleaseCandidate.number.desc(), ReleaseCandidate.id.desc())
    )
    return list(found)


async def candidates_named(
    session: AsyncSession, keys: Sequence[tuple[int, str]]
) -> list[ReleaseCandidate]:
    """The RCs named by (project id, version): one statement for all of them."""
    if not keys:
        return []
    found = await session.scalars(
        select(ReleaseCandidate).where(
            or_(
                *(
                    and_(ReleaseCandidate.project_id == project_id, ReleaseCandidate.version == v)
                    for project_id, v in keys
                )
            )
        )
    )
    return list(found)
