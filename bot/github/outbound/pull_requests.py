"""The pull-request note on GitHub: Tarmac's one comment on each pull request that ships,
made once and edited as the pull request moves on (bot/app/shipped.py enqueues it).

The body is rendered here, from what is stored when the item is delivered, so several queued
updates of one note converge on its latest state and an update that would change nothing
makes no call. Exactly one comment, across crashes: the comment's id is recorded in the
transaction that marks the item delivered; an attempt that may have posted without that
record (uncertain) first looks among the pull request's recent comments for the App's own
marked one and adopts it. A comment someone deleted (404 on the edit) is posted again.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.domain.pull_request_notes import NOTE_MARKER, note_body
from bot.github import endpoints
from bot.github.client import GitHubRefused
from bot.github.outbound.effects import EffectContext, Recorder, effect
from bot.storage import pull_request_notes as notes
from bot.storage.outbox import Action, ClaimedItem

log = logging.getLogger(__name__)

# A lost POST happened after its item was made; comments updated since a while before that
# (room for the clocks of Tarmac and GitHub to differ) hold it, if it landed.
LOOK_BACK = timedelta(minutes=10)
PER_PAGE = 100
MAX_PAGES = 10


@effect(Action.UPDATE_PULL_REQUEST_NOTE, paced=True)
async def update_pull_request_note(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    number = int(item.payload["issue_number"])
    async with ctx.db.read() as session:
        note_id = await notes.find_note_id(session, item.repo, number)
        note = await notes.load_note(session, note_id) if note_id is not None else None
        lines = await notes.note_lines(session, note_id) if note_id is not None else []
    if note is None or not lines:
        return None
    body = note_body(lines)
    if note.comment_id is not None:
        if note.posted_body == body:
            return None  # an earlier item wrote this state already
        if await _edited(ctx, item.repo, note.comment_id, body):
            return _recording(ctx, note.id, note.comment_id, body)
        log.info("pull request %s#%d: its note was deleted; posting it again", item.repo, number)
    if item.uncertain:
        found = await _own_note(ctx, item, number)
        if found is not None:
            comment_id = int(found["id"])
            if found.get("body") == body or await _edited(ctx, item.repo, comment_id, body):
                return _recording(ctx, note.id, comment_id, body)
    created = await endpoints.create_issue_comment(
        ctx.client, ctx.installation_id, item.repo, issue_number=number, body=body
    )
    return _recording(ctx, note.id, int(created["id"]), body)


async def _edited(ctx: EffectContext, repo: str, comment_id: int, body: str) -> bool:
    """Whether the comment took the new body; False when it is gone (deleted)."""
    try:
        await endpoints.update_issue_comment(
            ctx.client, ctx.installation_id, repo, comment_id=comment_id, body=body
        )
    except GitHubRefused as exc:
        if exc.status == 404:
            return False
        raise
    return True


async def _own_note(ctx: EffectContext, item: ClaimedItem, number: int) -> dict[str, Any] | None:
    """The App's marked comment on the pull request among those updated since shortly before
    the item was made, if an earlier attempt posted one."""
    since = (item.created_at - LOOK_BACK).strftime("%Y-%m-%dT%H:%M:%SZ")
    url: str | None = None
    for _ in range(MAX_PAGES):
        page = await endpoints.list_issue_comments(
            ctx.client,
            ctx.installation_id,
            item.repo,
            issue_number=number,
            since=since,
            per_page=PER_PAGE,
            url=url,
        )
        for comment in page.data:
            if is_own_note(comment, ctx.client.app_id):
                return dict(comment)
        url = page.next_url
        if url is None:
            return None
    log.warning("pull request %s#%d: too many recent comments to look through", item.repo, number)
    return None


def is_own_note(comment: dict[str, Any], app_id: int) -> bool:
    """A comment this App posted (GitHub names the App that made it) holding the marker."""
    via = comment.get("performed_via_github_app") or {}
    return via.get("id") == app_id and NOTE_MARKER in str(comment.get("body") or "")


def _recording(ctx: EffectContext, note_id: int, comment_id: int, body: str) -> Recorder:
    async def record(session: AsyncSession) -> None:
        await notes.record_posted(
            session, note_id, comment_id=comment_id, body=body, now=ctx.clock()
        )

    return record
