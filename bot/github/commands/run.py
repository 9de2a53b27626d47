"""Running a permitted command through the use cases of bot/app/operations.py.

`run` makes the command's change and returns the reply's text; the caller enqueues the reply
in the same transaction (bot/github/outbound/comments.py). A refusal of the domain rules
(frozen, nothing to roll back to, unknown environment, not yet promoted, …) changes nothing (a
savepoint) and is answered by its code, never an error of the outbox item; what the refusal
keeps on record (its audit row, `DomainError.after_rollback`) is written once the savepoint
has rolled back, beside the reply. Every decision goes through the release policy with
door `pull_request`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import operations
from bot.app import policy as release_policy
from bot.app.operations import Mirror
from bot.core import errors
from bot.core.clock import Clock
from bot.core.errors import DomainError, RefusalCode
from bot.domain.approvals import Approver, counted_approvers, person
from bot.domain.freeze import current_freeze
from bot.domain.policy import Door
from bot.github.commands import replies
from bot.github.commands.parse import CommandVerb
from bot.github.commands.replies import DONE, REFUSED, RefusalFacts, reply
from bot.github.commands.request import CommandRequest
from bot.storage import deployments as stored
from bot.storage.environments import environment_names
from bot.storage.models import Deployment
from bot.storage.policy import approvals_of
from bot.storage.projects import find_environment, find_project
from bot.storage.releases import find_release_candidate

DOOR = Door.PULL_REQUEST


async def run(
    session: AsyncSession,
    mirror: Mirror,
    request: CommandRequest,
    repo: str,
    clock: Clock,
    *,
    approver: Approver | None = None,
) -> str:
    """The command's change and the reply's text; a refusal changes nothing (savepoint).

    `approver` is who the commenter is as an approver (bot/github/access.py `approver_for`),
    read from GitHub before the transaction: for /approve only. The clock is read once the
    environment is locked (by the operation), so two changes of one environment are in time
    order as they are in id order."""
    asked = _Run(session, mirror, request, clock, approver)
    try:
        async with session.begin_nested():
            text = await _perform(asked, repo)
    except DomainError as refused:
        await _keep_after_rollback(session, refused)
        facts = await _refusal_facts(session, request, repo, refused, clock())
        return reply(request.line, REFUSED, replies.refusal_text(refused.code, request, facts))
    return reply(request.line, DONE, text)


@dataclass(frozen=True)
class _Run:
    """One command being run: where, what, and (for /approve) who approves."""

    session: AsyncSession
    mirror: Mirror
    request: CommandRequest
    clock: Clock
    approver: Approver | None


async def approving_teams(session: AsyncSession, request: CommandRequest) -> Sequence[str]:
    """The teams ("org/team-slug") the environment's `approvals.from` names, which the
    commenter's membership of is read for: none for an environment that is not there (the
    command is then refused for that)."""
    try:
        environment = await find_environment(session, request.project, request.environment)
    except DomainError:
        return ()
    rule = release_policy.policy_of(environment).approvals
    return rule.teams if rule is not None else ()


async def _keep_after_rollback(session: AsyncSession, refused: DomainError) -> None:
    """What a refusal keeps (its audit entry, its `deployment.refused` notification:
    bot/app/policy.py), written after the savepoint's rollback, in the transaction that
    enqueues the reply."""
    for keep in refused.after_rollback:
        await keep(session)


async def _perform(asked: _Run, repo: str) -> str:
    # The project was chosen from this repository's projects when the comment came in; it
    # must still be one of them (the projects file may have changed since).
    project = await find_project(asked.session, asked.request.project)
    if project.repo.lower() != repo.lower():
        raise errors.not_found(errors.PROJECT_NOT_FOUND)
    perform = _PERFORMERS[CommandVerb(asked.request.verb)]
    return await perform(asked)


class _Asked(TypedDict):
    project_name: str
    environment_name: str
    actor: str


def _asked(request: CommandRequest) -> _Asked:
    """Which environment the command is for, and who asked: what every use case is told."""
    return {
        "project_name": request.project,
        "environment_name": request.environment,
        "actor": request.actor,
    }


async def _roll_back(asked: _Run) -> str:
    request = asked.request
    done = await operations.roll_back(
        asked.session,
        asked.mirror,
        **_asked(request),
        force=request.force,
        clock=asked.clock,
        door=DOOR,
        reason=request.reason,
    )
    return replies.rolled_back(request, done)


async def _deploy(asked: _Run) -> str:
    request = asked.request
    assert request.release_candidate_version is not None  # the parser requires one
    deployment = await operations.deploy(
        asked.session,
        asked.mirror,
        **_asked(request),
        version=request.release_candidate_version,
        clock=asked.clock,
        door=DOOR,
        force=request.force,
        reason=request.reason,
    )
    return replies.deploying(request, deployment)


async def _freeze(asked: _Run) -> str:
    await operations.freeze(
        asked.session,
        **_asked(asked.request),
        reason=asked.request.reason,
        until=None,
        clock=asked.clock,
    )
    return replies.frozen(asked.request)


async def _unfreeze(asked: _Run) -> str:
    request = asked.request
    done = await operations.unfreeze(
        asked.session,
        project_name=request.project,
        environment_name=request.environment,
        clock=asked.clock,
        actor=request.actor,
    )
    return replies.unfrozen(request, was_frozen=done.was_frozen)


async def _cancel(asked: _Run) -> str:
    canceled = await operations.cancel_environment(
        asked.session, asked.mirror, **_asked(asked.request), clock=asked.clock
    )
    return replies.canceled(asked.request, canceled)


async def _approve(asked: _Run) -> str:
    request = asked.request
    assert asked.approver is not None  # read from GitHub for every /approve
    waiting = await _waiting_for_approval(asked.session, request)
    approvals_before = await _approvers(asked.session, waiting, asked.clock())
    deployment = await operations.approve(
        asked.session,
        asked.mirror,
        project_name=request.project,
        environment_name=request.environment,
        deployment_id=waiting.id,
        approver=asked.approver,
        door=DOOR,
        clock=asked.clock,
    )
    given = await _approvers(asked.session, deployment, asked.clock())
    again = person(asked.approver.actor) in approvals_before
    return replies.approved(request, deployment, len(given), again=again)


async def _reject(asked: _Run) -> str:
    request = asked.request
    assert request.reason is not None  # the parser requires one
    waiting = await _waiting_for_approval(asked.session, request)
    deployment = await operations.reject_deployment(
        asked.session,
        asked.mirror,
        **_asked(request),
        deployment_id=waiting.id,
        reason=request.reason,
        door=DOOR,
        clock=asked.clock,
    )
    return replies.rejected(request, deployment)


async def _mark_bad(asked: _Run) -> str:
    request = asked.request
    assert request.release_candidate_version is not None  # the parser requires both
    assert request.reason is not None
    await operations.mark_bad(
        asked.session,
        project_name=request.project,
        version=request.release_candidate_version,
        actor=request.actor,
        reason=request.reason,
        door=DOOR,
        clock=asked.clock,
    )
    return replies.marked_bad(request)


async def _clear_bad(asked: _Run) -> str:
    request = asked.request
    version = request.release_candidate_version
    assert version is not None  # the parser requires one
    project = await find_project(asked.session, request.project)
    was_marked = (await find_release_candidate(asked.session, project, version)).rejected_at
    await operations.clear_bad(
        asked.session,
        project_name=request.project,
        version=version,
        actor=request.actor,
        door=DOOR,
        clock=asked.clock,
    )
    return replies.cleared_bad(request, was_marked=was_marked is not None)


async def _waiting_for_approval(session: AsyncSession, request: CommandRequest) -> Deployment:
    """The environment's newest deployment waiting for approval: what /approve and /reject
    act on (the operation checks again, under the environment's lock)."""
    environment = await find_environment(session, request.project, request.environment)
    active = await stored.active_deployments(session, environment)
    waiting = next((d for d in active if operations.awaits_approval(d)), None)
    if waiting is None:
        raise errors.invalid(errors.NOT_WAITING_FOR_APPROVAL)
    return waiting


async def _approvers(session: AsyncSession, deployment: Deployment, now: datetime) -> set[str]:
    return counted_approvers(await approvals_of(session, deployment.id), now)


_PERFORMERS: dict[CommandVerb, Callable[[_Run], Awaitable[str]]] = {
    CommandVerb.ROLLBACK: _roll_back,
    CommandVerb.DEPLOY: _deploy,
    CommandVerb.FREEZE: _freeze,
    CommandVerb.UNFREEZE: _unfreeze,
    CommandVerb.CANCEL: _cancel,
    CommandVerb.APPROVE: _approve,
    CommandVerb.REJECT: _reject,
    CommandVerb.MARK_BAD: _mark_bad,
    CommandVerb.CLEAR_BAD: _clear_bad,
}


async def _refusal_facts(
    session: AsyncSession, request: CommandRequest, repo: str, refused: DomainError, now: datetime
) -> RefusalFacts:
    """What the reply to `refused` tells beyond the command, read after the savepoint's
    rollback: the environments there are, or the freeze in the way; and the rule's own
    message, which for the release policy says more than its code (which environment, until
    when)."""
    facts = RefusalFacts(repo, message=refused.message)
    if refused.code is RefusalCode.ENVIRONMENT_NOT_FOUND:
        names = await environment_names(session, request.project)
        return dataclasses.replace(facts, environment_names=names)
    if refused.code is RefusalCode.ENVIRONMENT_FROZEN:
        environment = await find_environment(session, request.project, request.environment)
        return dataclasses.replace(facts, freeze=current_freeze(environment, now))
    return facts
