"""The release candidate a tag makes, whichever way Tarmac learns of the tag: a `push` event
(bot/github/inbound/tags.py), or a `create` event whose commit the `resolve_tag` effect reads
(bot/github/outbound/builds.py). See bot/github/inbound/tags.py for which project a tag
belongs to."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import Mirror, create_candidate_from_tag
from bot.core.errors import DomainError
from bot.domain.statuses import BuildStatus
from bot.domain.versions import RcVersion, parse_rc_version
from bot.storage.batch_reads import BatchReads
from bot.storage.models import Project, ReleaseCandidate
from bot.storage.projects import find_project
from bot.storage.releases import read_candidates

log = logging.getLogger(__name__)

# release_candidates.tag is VARCHAR(300).
MAX_TAG_LENGTH = 300


@dataclass(frozen=True)
class TagTarget:
    """The RC a tag makes: `version` of project `project`."""

    project: str
    version: str
    # The project's row when the caller has read it already (saves reading it again).
    row: Project | None = field(default=None, compare=False)


def valid_tag(tag: str) -> bool:
    """A name git could have made (no control characters or spaces), short enough to keep."""
    return 0 < len(tag) <= MAX_TAG_LENGTH and tag.isprintable() and " " not in tag


# Built once: building a statement costs more than running it (this runs for every tag).
_PROJECTS_OF_REPOSITORY = select(Project).where(
    func.lower(Project.repo) == bindparam("repo"), Project.removed_at.is_(None)
)


async def tag_target(
    session: AsyncSession, repo: str, tag: str, reads: BatchReads | None = None
) -> TagTarget | None:
    """The project and RC version `tag` on `repo` stands for, or None when it is no RC tag.
    With a batch's `reads`, the repository's projects are read once per batch."""
    projects = await _projects_of(session, repo.lower(), reads)
    owners = [p for p in projects if tag.startswith(p.tag_prefix)]
    if not owners:
        return None
    owner = max(owners, key=lambda p: len(p.tag_prefix))
    version = tag[len(owner.tag_prefix) :]
    if parse_rc_version(version) is None:
        return None
    return TagTarget(owner.name, version, owner)


async def _projects_of(session: AsyncSession, repo: str, reads: BatchReads | None) -> list[Project]:
    if reads is not None and repo in reads.projects:
        return reads.projects[repo]
    projects = list(await session.scalars(_PROJECTS_OF_REPOSITORY, {"repo": repo}))
    if reads is not None:
        reads.projects[repo] = projects
    return projects


async def candidate_exists(
    session: AsyncSession, target: TagTarget, reads: BatchReads | None = None
) -> bool:
    """Whether the target's RC is made (from the batch's `reads` when they know)."""
    version = parse_rc_version(target.version)
    project = target.row
    if reads and project and version and reads.knows(project.id, version.release, version.text):
        return reads.candidates[(project.id, version.text)] is not None
    found = await session.scalar(
        select(ReleaseCandidate.id)
        .join(Project, Project.id == ReleaseCandidate.project_id)
        .where(Project.name == target.project, ReleaseCandidate.version == target.version)
    )
    return found is not None


async def make_candidate(
    session: AsyncSession,
    mirror: Mirror,
    target: TagTarget,
    tag: str,
    commit: str,
    now: datetime,
    reads: BatchReads | None = None,
) -> str:
    """The RC from the tag (see the module's docstring); returns what happened, in words."""
    name = f"{target.project} {target.version}"
    try:
        project = target.row or await find_project(session, target.project)
        created = await create_candidate_from_tag(
            session,
            mirror,
            project=project,
            tag=tag,
            version=target.version,
            commit=commit,
            now=now,
            reads=reads,
        )
    except DomainError as exc:
        # E.g. the RC exists at another commit (the tag was moved, or the API made it).
        log.warning("tag %s: release candidate %s not made: %s", tag, name, exc.message)
        return f"ignored: release candidate {name}: {exc.message}"
    if not created.created:
        return f"release candidate {name} exists"
    if created.candidate.build_status == BuildStatus.BUILDING:
        return f"release candidate {name} created; building"
    return f"release candidate {name} created; ready"


async def read_tags_ahead(
    session: AsyncSession, tags: Sequence[tuple[str, str]], reads: BatchReads
) -> None:
    """Read into `reads` what making RCs from these (repository, tag) pairs will look up: each
    repository's projects once, then each project's releases and RCs in one query, the projects
    locked in the order of their ids (two batches never wait for each other in a circle)."""
    versions: dict[int, tuple[Project, list[RcVersion]]] = {}
    for repo, tag in tags:
        target = await tag_target(session, repo, tag, reads)
        version = parse_rc_version(target.version) if target is not None else None
        if target is None or target.row is None or version is None:
            continue
        versions.setdefault(target.row.id, (target.row, []))[1].append(version)
    for project_id in sorted(versions):
        project, named = versions[project_id]
        await read_candidates(session, project, named, reads)
