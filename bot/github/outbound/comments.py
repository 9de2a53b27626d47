"""Pull-request commands on GitHub: the 👀 reaction, running a command, the reply.

`run_command` reads the commenter's permission from GitHub, then returns a Recorder that runs
the operation (bot/app/operations.py, mirrored to GitHub through the outbox) AND enqueues the reply
in the worker's one transaction, the one that marks the item delivered. So the command's change
and its reply commit together or not at all: an attempt that dies before that commit left
nothing behind and is simply run again (its only GitHub call is a read), and once it committed
the item is delivered and never runs again. A refusal of the domain rules (frozen, nothing to
roll back to, unknown environment, …) is a reply too, never an error of the item.

Replies quote the command line in a code span, and user text outside code spans has its
`@` defused, so a reply never mentions (notifies) anyone but the commenter.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.app import operations
from bot.app.operations import Mirror
from bot.core import errors
from bot.core.clock import Clock
from bot.core.errors import DomainError
from bot.domain.freeze import current_freeze, freeze_environment, unfreeze_environment
from bot.github.client import GitHubRefused
from bot.github.commands.parse import CommandVerb
from bot.github.outbound.effects import EffectContext, Recorder, effect, on_refusal, owner_and_name
from bot.storage.models import Deployment, Environment, Project
from bot.storage.outbox import ClaimedItem, enqueue
from bot.storage.projects import find_environment

log = logging.getLogger(__name__)

REACTION = "eyes"
ACTOR_PREFIX = "github:"
# GitHub's limit for a comment body.
MAX_COMMENT_LENGTH = 65536
MAX_QUOTED_LINE = 200
# How bot/github/commands/parse.py joins a problem and the verb's usage.
USAGE_SEPARATOR = "; usage: "

# Collaborator permission (FACTS §8): `permission` is admin/write/read/none (maintain shows as
# write, triage as read); `role_name` names the real role.
WRITE_PERMISSIONS = frozenset({"admin", "write"})
FORCE_ROLES = frozenset({"maintain", "admin"})

DONE = "✅"
REFUSED = "🚫"
PUZZLED = "❓"

NEEDS_WRITE = (
    "@{login} needs **write** access to {repo} to run this command "
    "(GitHub reports **{permission}**)."
)
NEEDS_FORCE_ROLE = (
    "`--force` needs the **maintain** or **admin** role on {repo}; @{login} has **{role}**."
)
ROLLBACK_STARTED = (
    "Rolling back **{environment}** ({project}) from `{from_version}` to `{version}` "
    "(commit {commit}), as @{login} asked: Tarmac deployment {deployment_id}."
)
ROLLBACK_REDEPLOY = (
    "Deploying `{version}` (commit {commit}) to **{environment}** ({project}) again, the "
    "newest version that succeeded there (its newest deployment did not), as @{login} asked: "
    "Tarmac deployment {deployment_id}."
)
DEPLOY_STARTED = (
    "Deploying `{version}` (commit {commit}) to **{environment}** ({project}), "
    "as @{login} asked: Tarmac deployment {deployment_id}."
)
WORKFLOW_STARTING = (
    "The deploy workflow `{workflow}` is being started; its run and statuses show on {url}."
)
NO_WORKFLOW = (
    "**{environment}** has no deploy workflow: the deployment's status comes from your CD "
    "system through Tarmac's API, and shows on {url}."
)
FROZEN_DONE = (
    "**{environment}** ({project}) is frozen{reason}. Deploys are refused until "
    "`/unfreeze {environment}`; a rollback needs `--force` (maintain or admin role)."
)
CANCEL_DONE = "Canceled {what} in **{environment}** ({project}), as @{login} asked."
CANCEL_RUNS = "Its deploy workflow run, if it started one, is being canceled on GitHub."
NOTHING_TO_CANCEL = (
    "nothing to cancel in **{environment}** ({project}): no deployment is under way."
)
UNFROZEN_DONE = "**{environment}** ({project}) is no longer frozen."
WAS_NOT_FROZEN = "**{environment}** ({project}) was not frozen; nothing changed."
FROZEN_REFUSAL = "**{environment}** ({project}) is frozen{details}."
FROZEN_ROLLBACK_HINT = (
    "Add `--force` to roll back anyway (maintain or admin role), or `/unfreeze {environment}` "
    "first."
)
FROZEN_DEPLOY_HINT = "Deploys resume after `/unfreeze {environment}`."
UNKNOWN_ENVIRONMENT = "unknown environment {environment} in {project}; its environments: {names}."
UNKNOWN_PROJECT = "unknown project {project} in {repo}."
RC_NOT_FOUND = "release candidate {version} not found in {project}."
NOTHING_TO_ROLL_BACK = "nothing to roll back to in **{environment}** ({project}): {message}."
PERMISSION_CHECK_REFUSED = "Tarmac could not check @{login}'s permission on {repo}: {reason}"


@dataclass(frozen=True)
class CommandRequest:
    """What a `run_command` item carries: the parsed command and where it was written."""

    verb: str
    environment: str
    project: str
    release_candidate_version: str | None
    force: bool
    reason: str | None
    line: str
    comment_id: int
    issue_number: int
    commenter: str
    repo_url: str  # the repository's page, for links (GitHub Enterprise has its own host)

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> CommandRequest:
        return cls(**payload)

    @property
    def actor(self) -> str:
        return ACTOR_PREFIX + self.commenter


@dataclass(frozen=True)
class Access:
    permission: str
    role_name: str

    @property
    def can_write(self) -> bool:
        return self.permission in WRITE_PERMISSIONS

    @property
    def can_force(self) -> bool:
        # A custom role based on maintain shows its own name: only maintain and admin count.
        return self.permission == "admin" or self.role_name in FORCE_ROLES


# --- formatting --------------------------------------------------------------------------


def code(text: str) -> str:
    """`text` as a Markdown code span, whatever backticks it holds (no mention, no markup)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def defuse_mentions(text: str) -> str:
    """User text shown outside a code span: `@name` must not notify anyone."""
    return text.replace("@", "@\u200b")


def reply(line: str, mark: str, text: str) -> str:
    """A reply to one command line: the line quoted, then the outcome."""
    quoted = line if len(line) <= MAX_QUOTED_LINE else line[:MAX_QUOTED_LINE] + "…"
    return f"> {code(quoted)}\n\n{mark} {text}"[:MAX_COMMENT_LENGTH]


def usage_reply(line: str, message: str) -> str:
    """What is wrong with a malformed command line, and its usage as code (GitHub would
    swallow `<environment>` as an HTML tag)."""
    problem, separator, usage = message.partition(USAGE_SEPARATOR)
    text = defuse_mentions(problem)
    if separator:
        text += f". Usage: {code(usage)}"
    return reply(line, PUZZLED, text)


def deployments_url(repo_url: str) -> str:
    return f"{repo_url}/deployments"


def _commit_link(repo_url: str, sha: str) -> str:
    return f"[`{sha[:7]}`]({repo_url}/commit/{sha})"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# --- enqueueing replies ------------------------------------------------------------------


async def enqueue_reply(
    session: AsyncSession,
    *,
    repo: str,
    comment_id: int,
    issue_number: int,
    body: str,
    now: datetime,
    ordering_key: str,
) -> None:
    await enqueue(
        session,
        action="post_comment",
        ordering_key=ordering_key,
        repo=repo,
        # `in_reply_to`: the comment answered, for whoever reads the outbox.
        payload={"issue_number": issue_number, "in_reply_to": comment_id, "body": body},
        now=now,
    )


# --- effects -----------------------------------------------------------------------------


@effect("add_reaction")
async def add_reaction(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    # 200 (it exists already: an attempt whose answer was lost) and 201 are both fine, so an
    # uncertain item is simply sent again.
    await ctx.client.call(
        "POST",
        "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
        installation_id=ctx.installation_id,
        url_vars={**owner_and_name(item.repo), "comment_id": item.payload["comment_id"]},
        data={"content": item.payload.get("content", REACTION)},
    )
    return None


@effect("post_comment")
async def post_comment(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    if item.uncertain:
        # An earlier attempt may have posted it and GitHub offers no way to tell (a comment has
        # no key of ours to look for): replies are at most once, a missing reply is better
        # than the same answer twice.
        log.warning("outbox item %d: reply may have been posted; not posted again", item.id)
        return None
    await ctx.client.call(
        "POST",
        "/repos/{owner}/{repo}/issues/{issue_number}/comments",
        installation_id=ctx.installation_id,
        url_vars={**owner_and_name(item.repo), "issue_number": item.payload["issue_number"]},
        data={"body": item.payload["body"]},
    )
    return None


@effect("run_command")
async def run_command(ctx: EffectContext, item: ClaimedItem) -> Recorder | None:
    # The permission is read again on every attempt: an uncertain attempt changed nothing
    # (its recorder never committed), and a read is safe to repeat.
    request = CommandRequest.from_payload(item.payload)
    access = await _access(ctx, item.repo, request.commenter)
    refusal = _permission_refusal(request, access, item.repo)

    async def record(session: AsyncSession) -> None:
        if refusal is not None:
            text = reply(request.line, REFUSED, refusal)
        else:
            text = await _run(session, ctx.mirror, request, item.repo, ctx.clock)
        now = ctx.clock()
        await enqueue_reply(
            session,
            repo=item.repo,
            comment_id=request.comment_id,
            issue_number=request.issue_number,
            body=text,
            now=now,
            ordering_key=item.ordering_key,
        )

    return record


@on_refusal("run_command")
async def permission_check_refused(
    session: AsyncSession, mirror: Mirror, item: ClaimedItem, reason: str, now: datetime
) -> None:
    """GitHub refused the permission read for good (e.g. the App lost access): say so."""
    request = CommandRequest.from_payload(item.payload)
    text = PERMISSION_CHECK_REFUSED.format(
        login=request.commenter, repo=item.repo, reason=defuse_mentions(reason)
    )
    await enqueue_reply(
        session,
        repo=item.repo,
        comment_id=request.comment_id,
        issue_number=request.issue_number,
        body=reply(request.line, REFUSED, text),
        now=now,
        ordering_key=item.ordering_key,
    )


async def _access(ctx: EffectContext, repo: str, login: str) -> Access:
    try:
        found = await ctx.client.call(
            "GET",
            "/repos/{owner}/{repo}/collaborators/{username}/permission",
            installation_id=ctx.installation_id,
            url_vars={**owner_and_name(repo), "username": login},
        )
    except GitHubRefused as exc:
        if exc.status == 404:  # not a user GitHub knows here: no access
            return Access("none", "none")
        raise
    permission = str(found.get("permission") or "none")
    return Access(permission, str(found.get("role_name") or permission))


def _permission_refusal(request: CommandRequest, access: Access, repo: str) -> str | None:
    if not access.can_write:
        return NEEDS_WRITE.format(login=request.commenter, repo=repo, permission=access.permission)
    if request.force and not access.can_force:
        return NEEDS_FORCE_ROLE.format(
            login=request.commenter, repo=repo, role=defuse_mentions(access.role_name)
        )
    return None


# --- running a command -------------------------------------------------------------------


async def _run(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, repo: str, clock: Clock
) -> str:
    """The command's change and the reply's text; a refusal changes nothing (savepoint).

    The clock is read once the environment is locked (by the operation), so two changes of
    one environment are in time order as they are in id order."""
    try:
        async with session.begin_nested():
            text = await _perform(session, mirror, request, repo, clock)
    except DomainError as refused:
        text = await _refusal(session, request, repo, refused, clock())
        return reply(request.line, REFUSED, text)
    return reply(request.line, DONE, text)


async def _perform(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, repo: str, clock: Clock
) -> str:
    # The project was chosen from this repository's projects when the comment came in; it
    # must still be one of them (the projects file may have changed since).
    project = await session.scalar(select(Project).where(Project.name == request.project))
    if project is None or project.repo.lower() != repo.lower():
        raise errors.not_found(errors.PROJECT_NOT_FOUND)
    perform = _PERFORMERS[CommandVerb(request.verb)]
    return await perform(session, mirror, request, clock)


async def _roll_back(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, clock: Clock
) -> str:
    done = await operations.roll_back(
        session,
        mirror,
        project_name=request.project,
        environment_name=request.environment,
        actor=request.actor,
        force=request.force,
        clock=clock,
    )
    target = done.deployment.release_candidate
    template = ROLLBACK_STARTED if done.rolled_back_from.id != target.id else ROLLBACK_REDEPLOY
    started = template.format(
        environment=request.environment,
        project=request.project,
        from_version=done.rolled_back_from.version,
        version=target.version,
        commit=_commit_link(request.repo_url, target.commit_sha),
        login=request.commenter,
        deployment_id=done.deployment.id,
    )
    return f"{started}\n\n{_follow_up(done.deployment, request)}"


async def _deploy(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, clock: Clock
) -> str:
    assert request.release_candidate_version is not None  # the parser requires one
    deployment = await operations.deploy(
        session,
        mirror,
        project_name=request.project,
        environment_name=request.environment,
        version=request.release_candidate_version,
        actor=request.actor,
        clock=clock,
    )
    started = DEPLOY_STARTED.format(
        version=deployment.release_candidate.version,
        commit=_commit_link(request.repo_url, deployment.release_candidate.commit_sha),
        environment=request.environment,
        project=request.project,
        login=request.commenter,
        deployment_id=deployment.id,
    )
    return f"{started}\n\n{_follow_up(deployment, request)}"


async def _freeze(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, clock: Clock
) -> str:
    environment = await find_environment(session, request.project, request.environment, lock=True)
    now = clock()
    freeze_environment(environment, reason=request.reason, by=request.actor, until=None, now=now)
    reason = f": {defuse_mentions(request.reason)}" if request.reason else ""
    return FROZEN_DONE.format(
        environment=request.environment, project=request.project, reason=reason
    )


async def _unfreeze(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, clock: Clock
) -> str:
    environment = await find_environment(session, request.project, request.environment, lock=True)
    names = {"environment": request.environment, "project": request.project}
    if current_freeze(environment, clock()) is None:
        return WAS_NOT_FROZEN.format(**names)
    unfreeze_environment(environment)
    return UNFROZEN_DONE.format(**names)


async def _cancel(
    session: AsyncSession, mirror: Mirror, request: CommandRequest, clock: Clock
) -> str:
    canceled = await operations.cancel_environment(
        session,
        mirror,
        project_name=request.project,
        environment_name=request.environment,
        actor=request.actor,
        clock=clock,
    )
    what = ", ".join(
        f"deployment {d.id} (`{d.release_candidate.version}`, {d.kind})" for d in canceled
    )
    done = CANCEL_DONE.format(
        what=what, environment=request.environment, project=request.project, login=request.commenter
    )
    if canceled[0].environment.deploy_workflow is None:
        return done
    return f"{done} {CANCEL_RUNS}"


_PERFORMERS: dict[
    CommandVerb, Callable[[AsyncSession, Mirror, CommandRequest, Clock], Awaitable[str]]
] = {
    CommandVerb.ROLLBACK: _roll_back,
    CommandVerb.DEPLOY: _deploy,
    CommandVerb.FREEZE: _freeze,
    CommandVerb.UNFREEZE: _unfreeze,
    CommandVerb.CANCEL: _cancel,
}


def _follow_up(deployment: Deployment, request: CommandRequest) -> str:
    """Where the deployment can be followed: its run is not known until the dispatch."""
    url = deployments_url(request.repo_url)
    workflow = deployment.environment.deploy_workflow
    if workflow is None:
        return NO_WORKFLOW.format(environment=request.environment, url=url)
    return WORKFLOW_STARTING.format(workflow=workflow, url=url)


async def _refusal(
    session: AsyncSession, request: CommandRequest, repo: str, refused: DomainError, now: datetime
) -> str:
    """Why the domain rules said no, with what the commenter needs to know to act on it."""
    names = {"environment": request.environment, "project": request.project}
    if refused.message == errors.ENVIRONMENT_NOT_FOUND:
        return UNKNOWN_ENVIRONMENT.format(
            environment=code(request.environment),
            project=request.project,
            names=", ".join(await _environment_names(session, request.project)) or "none",
        )
    if refused.message == errors.PROJECT_NOT_FOUND:
        return UNKNOWN_PROJECT.format(project=code(request.project), repo=repo)
    if refused.message == errors.RELEASE_NOT_FOUND:
        return RC_NOT_FOUND.format(version=code(request.release_candidate_version or ""), **names)
    if refused.message == errors.NOTHING_TO_ROLL_BACK_TO:
        return NOTHING_TO_ROLL_BACK.format(message=refused.message, **names)
    if refused.message == errors.NOTHING_TO_CANCEL:
        return NOTHING_TO_CANCEL.format(**names)
    if refused.message == errors.ENVIRONMENT_FROZEN:
        return await _frozen_refusal(session, request, now)
    return f"{refused.message}."


async def _frozen_refusal(session: AsyncSession, request: CommandRequest, now: datetime) -> str:
    environment = await find_environment(session, request.project, request.environment)
    freeze = current_freeze(environment, now)
    details = ""
    if freeze is not None:
        by = f" by {defuse_mentions(freeze.by)}" if freeze.by else ""
        details = f"{by} since {_when(freeze.since)}"
        if freeze.until is not None:
            details += f" until {_when(freeze.until)}"
        if freeze.reason:
            details += f": {defuse_mentions(freeze.reason)}"
    text = FROZEN_REFUSAL.format(
        environment=request.environment, project=request.project, details=details
    )
    hint = FROZEN_ROLLBACK_HINT if request.verb == CommandVerb.ROLLBACK else FROZEN_DEPLOY_HINT
    return f"{text} {hint.format(environment=request.environment)}"


async def _environment_names(session: AsyncSession, project_name: str) -> list[str]:
    found = await session.scalars(
        select(Environment.name)
        .join(Project, Project.id == Environment.project_id)
        .where(Project.name == project_name, Environment.removed_at.is_(None))
        .order_by(Environment.id)
    )
    return [code(name) for name in found]
