"""What a successful deployment tells the pull requests it shipped, and the GitHub Release a
first production success makes.

The deployment-success path (which works out the pull requests that came into or went out of
the environment, from the change report) calls these in its transaction; each writes what it
decides and enqueues the GitHub calls, so they happen exactly when the success commits. Both
check the project's switches themselves, so a caller cannot forget them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.changes import Commit, PullRequest
from bot.domain.pull_request_notes import Presence
from bot.domain.release_notes import release_notes
from bot.storage import pull_request_notes as notes
from bot.storage.models import Environment, Project, ReleaseCandidate
from bot.storage.outbox import Action, enqueue, pull_request_key, release_candidate_key


async def record_shipped(
    session: AsyncSession,
    *,
    project: Project,
    environment: Environment,
    candidate: ReleaseCandidate,
    came_in: Sequence[PullRequest],
    went_out: Sequence[PullRequest],
    now: datetime,
) -> None:
    """A deployment of `candidate` to `environment` succeeded at `now`: remember where each PR
    now is and enqueue the edit of each one's Tarmac comment (one outbox item per PR).

    A pull request that went out (a rollback to `candidate`) is noted only where its note
    says it was in: one that never had a note gets none for leaving. Nothing is enqueued for
    a pull request whose note this changes nothing in (the same success told twice)."""
    if not project.pull_request_comments:
        return
    changed: dict[int, None] = {}  # numbers, in the order met
    for pr in went_out:
        if await _went_out(session, project, environment, candidate, pr, now):
            changed[pr.number] = None
    for pr in came_in:
        note_id = await notes.note_id_for(session, project.repo, pr.number, now)
        if await notes.set_presence(
            session,
            note_id=note_id,
            environment=environment,
            candidate=candidate,
            presence=Presence.IN,
            now=now,
        ):
            changed[pr.number] = None
    for number in changed:
        await _enqueue_note_update(session, project.repo, number, now)


async def _went_out(
    session: AsyncSession,
    project: Project,
    environment: Environment,
    candidate: ReleaseCandidate,
    pr: PullRequest,
    now: datetime,
) -> bool:
    note_id = await notes.find_note_id(session, project.repo, pr.number)
    if note_id is None or await notes.presence_in(session, note_id, environment.id) is None:
        return False
    return await notes.set_presence(
        session,
        note_id=note_id,
        environment=environment,
        candidate=candidate,
        presence=Presence.OUT,
        now=now,
    )


async def _enqueue_note_update(
    session: AsyncSession, repo: str, number: int, now: datetime
) -> None:
    # The body is rendered when the item is delivered, from what is stored then: the payload
    # names the pull request only, so queued updates of one note converge on its latest state.
    await enqueue(
        session,
        action=Action.UPDATE_PULL_REQUEST_NOTE,
        ordering_key=pull_request_key(repo, number),
        repo=repo,
        payload={"issue_number": number},
        now=now,
    )


async def plan_release(
    session: AsyncSession,
    *,
    project: Project,
    candidate: ReleaseCandidate,
    previous: ReleaseCandidate | None,
    pull_requests: Sequence[PullRequest],
    commits: Sequence[Commit],
    now: datetime,
) -> None:
    """The candidate first succeeded in a production environment: create or update the GitHub
    Release of its tag, notes from the change report since `previous`.

    Only for a candidate made from a tag: creating a tag for one made through the API would
    start Tarmac's own tag flow (a `create` event, a candidate for it), and the Release
    belongs to the tag someone pushed."""
    if not project.github_releases or candidate.tag is None:
        return
    body = release_notes(
        version=candidate.version,
        previous_version=previous.version if previous is not None else None,
        pull_requests=pull_requests,
        commits=commits,
    )
    name = f"{project.name} {candidate.version}" if project.tag_prefix else candidate.version
    await enqueue(
        session,
        action=Action.PUBLISH_RELEASE,
        ordering_key=release_candidate_key(candidate.id),
        repo=project.repo,
        release_candidate_id=candidate.id,
        payload={"tag": candidate.tag, "name": name, "body": body},
        now=now,
    )
