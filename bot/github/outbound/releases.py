"""GitHub Releases: the release of a candidate's tag when it first reaches production
(bot/app/shipped.py enqueues it, with its notes).

Naturally idempotent: the release is looked up by its tag first, so an attempt whose POST may
have landed finds what it made and edits it. A release a person made for the tag is left as
they wrote it.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.github import endpoints
from bot.github.client import GitHubRefused
from bot.github.outbound.effects import EffectContext, Recorder, effect
from bot.storage.outbox import Action, ClaimedItem

log = logging.getLogger(__name__)


@effect(Action.PUBLISH_RELEASE, paced=True)
async def publish_release(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    tag, name, body = item.payload["tag"], item.payload["name"], item.payload["body"]
    found = await _release_of(ctx, item.repo, tag)
    if found is None:
        await endpoints.create_release(
            ctx.client, ctx.installation_id, item.repo, tag=tag, name=name, body=body
        )
        return None
    if not made_by_an_app(found):
        log.info("release of %s in %s was made by a person; left as it is", tag, item.repo)
        return None
    if found.get("name") == name and found.get("body") == body:
        return None
    await endpoints.update_release(
        ctx.client,
        ctx.installation_id,
        item.repo,
        release_id=int(found["id"]),
        name=name,
        body=body,
    )
    return None


async def _release_of(ctx: EffectContext, repo: str, tag: str) -> dict[str, Any] | None:
    try:
        found = await endpoints.get_release_by_tag(ctx.client, ctx.installation_id, repo, tag=tag)
    except GitHubRefused as exc:
        if exc.status == 404:
            return None
        raise
    return dict(found)


def made_by_an_app(release: dict[str, Any]) -> bool:
    """Whether an App (Tarmac, or another bot) made the release: its notes are generated and
    may be replaced; a person's are theirs."""
    author = release.get("author") or {}
    return author.get("type") == "Bot"
