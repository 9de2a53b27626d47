"""Pull-request commands on GitHub: the 👀 reaction, running a command, the reply.

`run_command` reads the commenter's permission from GitHub (and, for `/approve`, their
membership of the teams the environment's approvals name: bot/github/access.py
`approver_for`), then returns a Recorder that runs
the command (bot/github/commands/run.py, through bot/app/operations.py, mirrored to GitHub
through the outbox) AND enqueues the reply in the worker's one transaction, the one that marks
the item delivered. So the command's change and its reply commit together or not at all: an
attempt that dies before that commit left nothing behind and is simply run again (its only
GitHub calls are reads), and once it committed the item is delivered and never runs again.

The three actions are enqueued here too (`enqueue_*`), so their names and payloads are written
once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app.operations import Mirror
from bot.domain.approvals import Approver
from bot.github import endpoints
from bot.github.access import TeamMemberships, approver_for
from bot.github.client import GitHubRefused
from bot.github.commands import replies
from bot.github.commands.parse import CommandVerb
from bot.github.commands.permissions import NO_ACCESS, Access, Verdict, may_run_command
from bot.github.commands.request import CommandRequest
from bot.github.commands.run import approving_teams, run
from bot.github.outbound.effects import EffectContext, Recorder, effect, on_refusal
from bot.storage.outbox import Action, ClaimedItem, comment_key, enqueue

log = logging.getLogger(__name__)

REACTION = "eyes"


@dataclass(frozen=True)
class Thread:
    """Where a reply goes: the pull request, and the comment it answers."""

    repo: str
    issue_number: int
    comment_id: int

    @property
    def ordering_key(self) -> str:
        # Everything a comment leads to runs in order: the reaction, each command, its reply.
        return comment_key(self.comment_id)


# --- enqueueing --------------------------------------------------------------------------


async def enqueue_reaction(session: AsyncSession, thread: Thread, now: datetime) -> None:
    payload = {"comment_id": thread.comment_id, "content": REACTION}
    await _enqueue(session, Action.ADD_REACTION, thread, payload, now)


async def enqueue_command(
    session: AsyncSession, thread: Thread, request: CommandRequest, now: datetime
) -> None:
    await _enqueue(session, Action.RUN_COMMAND, thread, request.to_payload(), now)


async def enqueue_reply(session: AsyncSession, thread: Thread, body: str, now: datetime) -> None:
    # `in_reply_to`: the comment answered, for whoever reads the outbox.
    payload = {"issue_number": thread.issue_number, "in_reply_to": thread.comment_id, "body": body}
    await _enqueue(session, Action.POST_COMMENT, thread, payload, now)


async def _enqueue(
    session: AsyncSession, action: Action, thread: Thread, payload: dict[str, Any], now: datetime
) -> None:
    await enqueue(
        session,
        action=action,
        ordering_key=thread.ordering_key,
        repo=thread.repo,
        payload=payload,
        now=now,
    )


def _thread(item: ClaimedItem, request: CommandRequest) -> Thread:
    return Thread(item.repo, request.issue_number, request.comment_id)


# --- effects -----------------------------------------------------------------------------


@effect(Action.ADD_REACTION)
async def add_reaction(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    # 200 (it exists already: an attempt whose answer was lost) and 201 are both fine, so an
    # uncertain item is simply sent again.
    content = item.payload.get("content", REACTION)
    await endpoints.create_comment_reaction(
        ctx.client,
        ctx.installation_id,
        item.repo,
        comment_id=item.payload["comment_id"],
        content=content,
    )
    return None


@effect(Action.POST_COMMENT, paced=True)
async def post_comment(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    if item.uncertain:
        # An earlier attempt may have posted it and GitHub offers no way to tell (a comment has
        # no key of ours to look for): replies are at most once, a missing reply is better
        # than the same answer twice.
        log.warning("outbox item %d: reply may have been posted; not posted again", item.id)
        return None
    await endpoints.create_issue_comment(
        ctx.client,
        ctx.installation_id,
        item.repo,
        issue_number=item.payload["issue_number"],
        body=item.payload["body"],
    )
    return None


@effect(Action.RUN_COMMAND)
async def run_command(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    # The permission is read again on every attempt: an uncertain attempt changed nothing
    # (its recorder never committed), and a read is safe to repeat.
    request = CommandRequest.from_payload(item.payload)
    access = await _access(ctx, item.repo, request.commenter)
    verdict = may_run_command(access, force=request.force)
    approver = None
    if verdict is Verdict.ALLOWED and request.verb == CommandVerb.APPROVE:
        approver = await _approver(ctx, item.repo, request, access)

    async def record(session: AsyncSession) -> None:
        if verdict is Verdict.ALLOWED:
            body = await run(session, ctx.mirror, request, item.repo, ctx.clock, approver=approver)
        else:
            body = replies.not_permitted(verdict, request, item.repo, access)
        await enqueue_reply(session, _thread(item, request), body, ctx.clock())

    return record


@on_refusal(Action.RUN_COMMAND)
async def permission_check_refused(
    session: AsyncSession, mirror: Mirror, item: ClaimedItem, reason: str, now: datetime
) -> None:
    """GitHub refused the permission read for good (e.g. the App lost access): say so."""
    request = CommandRequest.from_payload(item.payload)
    body = replies.permission_check_refused(request, item.repo, reason)
    await enqueue_reply(session, _thread(item, request), body, now)


async def _approver(
    ctx: EffectContext, repo: str, request: CommandRequest, access: Access
) -> Approver:
    """Who the commenter is as an approver: their role from `access`, and their membership
    of the teams the environment's `approvals.from` names (none asked when it names none)."""
    async with ctx.db.read() as session:
        teams = await approving_teams(session, request)
    memberships = ctx.memberships or TeamMemberships(ctx.client)
    return await approver_for(
        request.commenter,
        repo,
        access=access,
        teams=teams,
        memberships=memberships,
        installation_id=ctx.installation_id,
        actor=request.actor,
    )


async def _access(ctx: EffectContext, repo: str, login: str) -> Access:
    try:
        found = await endpoints.get_collaborator_permission(
            ctx.client, ctx.installation_id, repo, username=login
        )
    except GitHubRefused as exc:
        if exc.status == 404:  # not a user GitHub knows here: no access
            return NO_ACCESS
        raise
    return Access.from_github(found)
