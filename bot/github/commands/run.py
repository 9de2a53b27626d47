"""Running a permitted command through the use cases of bot/app/operations.py.

`run` makes the command's change and returns the reply's text; the caller enqueues the reply
in the same transaction (bot/github/outbound/comments.py). A refusal of the domain rules
(frozen, nothing to roll back to, unknown environment, …) changes nothing (a savepoint) and is
answered by its code, never an error of the outbox item.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypedDict

from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import operations
from bot.app.operations import Mirror
from bot.core import errors
from bot.core.clock import Clock
from bot.core.errors import DomainError, RefusalCode
from bot.domain.freeze import current_freeze
from bot.github.commands import replies
from bot.github.commands.parse import CommandVerb
from bot.github.commands.replies import DONE, REFUSED, RefusalFacts, reply
from bot.github.commands.request import CommandRequest
from bot.storage.environments import environment_names
from bot.storage.projects import find_environment, find_project


async def run(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, repo: str, clock: Clock
) -> str:
    """The command's change and the reply's text; a refusal changes nothing (savepoint).

    The clock is read once the environment is locked (by the operation), so two changes of
    one environment are in time order as they are in id order."""
    try:
        async with session.begin_nested():
            text = await _perform(session, mirror, request, repo, clock)
    except DomainError as refused:
        await _keep_after_rollback(session, refused)
        facts = await _refusal_facts(session, request, repo, refused.code, clock())
        return reply(request.line, REFUSED, replies.refusal_text(refused.code, request, facts))
    return reply(request.line, DONE, text)


async def _keep_after_rollback(session: AsyncSession, refused: DomainError) -> None:
    """What a refusal keeps (its audit entry, its `deployment.refused` notification:
    bot/app/policy.py), written after the savepoint's rollback, in the transaction that
    enqueues the reply."""
    for keep in refused.after_rollback:
        await keep(session)


async def _perform(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, repo: str, clock: Clock
) -> str:
    # The project was chosen from this repository's projects when the comment came in; it
    # must still be one of them (the projects file may have changed since).
    project = await find_project(session, request.project)
    if project.repo.lower() != repo.lower():
        raise errors.not_found(errors.PROJECT_NOT_FOUND)
    perform = _PERFORMERS[CommandVerb(request.verb)]
    return await perform(session, mirror, request, clock)


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


async def _roll_back(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, clock: Clock
) -> str:
    done = await operations.roll_back(
        session, mirror, **_asked(request), force=request.force, clock=clock
    )
    return replies.rolled_back(request, done)


async def _deploy(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, clock: Clock
) -> str:
    assert request.release_candidate_version is not None  # the parser requires one
    deployment = await operations.deploy(
        session,
        mirror,
        **_asked(request),
        version=request.release_candidate_version,
        clock=clock,
    )
    return replies.deploying(request, deployment)


async def _freeze(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, clock: Clock
) -> str:
    await operations.freeze(
        session, **_asked(request), reason=request.reason, until=None, clock=clock
    )
    return replies.frozen(request)


async def _unfreeze(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, clock: Clock
) -> str:
    done = await operations.unfreeze(
        session,
        project_name=request.project,
        environment_name=request.environment,
        clock=clock,
        actor=request.actor,
    )
    return replies.unfrozen(request, was_frozen=done.was_frozen)


async def _cancel(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, clock: Clock
) -> str:
    canceled = await operations.cancel_environment(session, mirror, **_asked(request), clock=clock)
    return replies.canceled(request, canceled)


_PERFORMERS: dict[
    CommandVerb, Callable[[AsyncSession, Mirror, CommandRequest, Clock], Awaitable[str]]
] = {
    CommandVerb.ROLLBACK: _roll_back,
    CommandVerb.DEPLOY: _deploy,
    CommandVerb.FREEZE: _freeze,
    CommandVerb.UNFREEZE: _unfreeze,
    CommandVerb.CANCEL: _cancel,
}


async def _refusal_facts(
    session: AsyncSession, request: CommandRequest, repo: str, refused: RefusalCode, now: datetime
) -> RefusalFacts:
    """What the reply to `refused` tells beyond the command, read after the savepoint's
    rollback: the environments there are, or the freeze in the way."""
    if refused is RefusalCode.ENVIRONMENT_NOT_FOUND:
        names = await environment_names(session, request.project)
        return RefusalFacts(repo, environment_names=names)
    if refused is RefusalCode.ENVIRONMENT_FROZEN:
        environment = await find_environment(session, request.project, request.environment)
        return RefusalFacts(repo, freeze=current_freeze(environment, now))
    return RefusalFacts(repo)
