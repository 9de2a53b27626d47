"""The release candidate a tag makes, whichever way Tarmac learns of the tag: a `push` event
(bot/github/inbound/tags.py), or a `create` event whose commit the `resolve_tag` effect reads
(bot/github/outbound/builds.py). See bot/github/inbound/tags.py for which project a tag
belongs to."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import Mirror, create_candidate_from_tag
from bot.core.errors import DomainError
from bot.domain.statuses import BuildStatus
from bot.domain.versions import parse_rc_version
from bot.storage.models import Project, ReleaseCandidate
from bot.storage.projects import find_project

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


async def tag_target(session: AsyncSession, repo: str, tag: str) -> TagTarget | None:
    """The project and RC version `tag` on `repo` stands for, or None when it is no RC tag."""
    projects = await session.scalars(_PROJECTS_OF_REPOSITORY, {"repo": repo.lower()})
    owners = [p for p in projects if tag.startswith(p.tag_prefix)]
    if not owners:
        return None
    owner = max(owners, key=lambda p: len(p.tag_prefix))
    version = tag[len(owner.tag_prefix) :]
    if parse_rc_version(version) is None:
        return None
    return TagTarget(owner.name, version, owner)


async def candidate_exists(session: AsyncSession, target: TagTarget) -> bool:
    found = await session.scalar(
        select(ReleaseCandidate.id)
        .join(Project, Project.id == ReleaseCandidate.project_id)
        .where(Project.name == target.project, ReleaseCandidate.version == target.version)
    )
    return found is not None


async def make_candidate(
    session: AsyncSession, mirror: Mirror, target: TagTarget, tag: str, commit: str, now: datetime
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
