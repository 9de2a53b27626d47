"""Where each noted pull request stands: the `pr_notes` and `pr_note_environments` tables.

Written by bot/app/shipped.py when a deployment succeeds, read by the outbox effect that
renders the note (bot/github/outbound/pull_requests.py). Notes are upserted: two environments
of one pull request succeeding at once on PostgreSQL do not collide on its note.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.pull_request_notes import NoteLine, Presence
from bot.storage.lookup import dialect_insert
from bot.storage.models import (
    Environment,
    Project,
    PullRequestNote,
    PullRequestNoteEnvironment,
    ReleaseCandidate,
)


async def note_id_for(session: AsyncSession, repo: str, number: int, now: datetime) -> int:
    """The id of the pull request's note, made if it has none yet."""
    insert = dialect_insert(session)
    await session.execute(
        insert(PullRequestNote)
        .values(repo=repo.lower(), number=number, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["repo", "number"])
    )
    found = await find_note_id(session, repo, number)
    assert found is not None
    return found


async def find_note_id(session: AsyncSession, repo: str, number: int) -> int | None:
    found = await session.scalar(
        select(PullRequestNote.id).where(
            PullRequestNote.repo == repo.lower(), PullRequestNote.number == number
        )
    )
    return None if found is None else int(found)


async def set_presence(
    session: AsyncSession,
    *,
    note_id: int,
    environment: Environment,
    candidate: ReleaseCandidate,
    presence: Presence,
    now: datetime,
) -> bool:
    """Record that the note's pull request is `presence` in `environment` with `candidate`;
    False when that is what was recorded already (nothing to tell GitHub)."""
    existing = await session.scalar(
        select(PullRequestNoteEnvironment).where(
            PullRequestNoteEnvironment.note_id == note_id,
            PullRequestNoteEnvironment.environment_id == environment.id,
        )
    )
    if existing is None:
        session.add(
            PullRequestNoteEnvironment(
                note_id=note_id,
                environment_id=environment.id,
                release_candidate_id=candidate.id,
                version=candidate.version,
                presence=presence,
                at=now,
            )
        )
        await session.flush()
        return True
    if existing.presence == presence and existing.release_candidate_id == candidate.id:
        return False
    existing.release_candidate_id = candidate.id
    existing.version = candidate.version
    existing.presence = presence
    existing.at = now
    await session.flush()
    return True


async def presence_in(session: AsyncSession, note_id: int, environment_id: int) -> Presence | None:
    """Where the note says its pull request stands in the environment; None: not there."""
    found = await session.scalar(
        select(PullRequestNoteEnvironment.presence).where(
            PullRequestNoteEnvironment.note_id == note_id,
            PullRequestNoteEnvironment.environment_id == environment_id,
        )
    )
    return None if found is None else Presence(found)


async def load_note(session: AsyncSession, note_id: int) -> PullRequestNote | None:
    return await session.get(PullRequestNote, note_id)


async def note_lines(session: AsyncSession, note_id: int) -> list[NoteLine]:
    """The note's lines in the order the projects file gives (projects, then each project's
    environments, both in the order they were first synced)."""
    rows = await session.execute(
        select(
            Project.name,
            Environment.name,
            PullRequestNoteEnvironment.presence,
            PullRequestNoteEnvironment.version,
            PullRequestNoteEnvironment.at,
        )
        .join(Environment, Environment.id == PullRequestNoteEnvironment.environment_id)
        .join(Project, Project.id == Environment.project_id)
        .where(PullRequestNoteEnvironment.note_id == note_id)
        .order_by(Project.id, Environment.id)
    )
    return [
        NoteLine(project, environment, Presence(presence), version, at)
        for project, environment, presence, version, at in rows
    ]


async def record_posted(
    session: AsyncSession, note_id: int, *, comment_id: int, body: str, now: datetime
) -> None:
    """The note's comment on GitHub (made, adopted or edited) and what it now says."""
    await session.execute(
        update(PullRequestNote)
        .where(PullRequestNote.id == note_id)
        .values(comment_id=comment_id, posted_body=body, updated_at=now)
    )
