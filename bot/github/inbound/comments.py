"""`issue_comment`: Tarmac's slash commands in pull-request comments (bot/github/commands/parse.py).

A new comment on a pull request of a repository that serves a project, written by a person
(not a bot: Tarmac's own replies are comments too), with at least one command line, gets, in
the delivery's transaction: a 👀 reaction, then one `run_command` item per command in the order
written, all under the comment's ordering key, so the commands run one after the other after
the reaction. Everything else is ignored: edits and deletions (an edited command must not run
again), issues that are not pull requests, comments without a command.

What the comment and the projects file decide is answered here, without a permission check
(it changes nothing and reveals nothing the repository does not show): a malformed command line
gets its usage, and the project is chosen — the repository's only project, or the one named by
`--project`, which must be one of this repository's (a comment in one repository never acts on
another's project; the permission checked is this repository's). What the database decides —
permission first, then environment, freeze, release candidate, rollback target — is decided by
the `run_command` effect in the transaction that changes it (bot/github/outbound/comments.py,
bot/github/commands/permissions.py and run.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeGuard

from gidgethub import routing, sansio
from sqlalchemy.ext.asyncio import AsyncSession

from bot.config.projects_file import ProjectsConfig
from bot.github.commands.parse import Command, CommandError, ParsedLine, parse_commands
from bot.github.commands.replies import REFUSED, code, reply, usage_reply
from bot.github.commands.request import CommandRequest
from bot.github.outbound.comments import (
    Thread,
    enqueue_command,
    enqueue_reaction,
    enqueue_reply,
)
from bot.storage.outbox import comment_key, enqueued_before
from bot.storage.projects import ProjectRepositories

if TYPE_CHECKING:
    from bot.github.inbound.context import WebhookContext

router = routing.Router()

CREATED = "created"
BOT_TYPE = "Bot"
BOT_LOGIN_SUFFIX = "[bot]"
REPO_PAGE = "https://github.com/{repo}"

SEVERAL_PROJECTS = "{repo} serves several projects; name one with `--project NAME`: {names}."
NOT_THIS_REPOSITORYS_PROJECT = "{repo} has no project {project}; its projects: {names}."


@dataclass(frozen=True)
class _Comment:
    thread: Thread
    author: str
    repo_url: str
    commands: list[ParsedLine]


@router.register("issue_comment")
async def on_issue_comment(event: sansio.Event, context: WebhookContext) -> None:
    found = _comment_and_projects(event.data, context.projects)
    if isinstance(found, str):
        context.ignore(found)
        return
    comment, projects = found
    thread = comment.thread
    if await _handled_before(context.session, thread.comment_id):
        # The same comment in another delivery (not a redelivery: that has the same delivery
        # id and stops at the endpoint), e.g. from a second webhook on the repository.
        context.ignore(f"comment {thread.comment_id} handled already")
        return

    await enqueue_reaction(context.session, thread, context.now)
    queued = 0
    for parsed in comment.commands:
        queued += await _enqueue_line(context.session, comment, parsed, projects, context.now)
    context.record(
        f"comment {thread.comment_id} on #{thread.issue_number} by {comment.author}: "
        f"{queued} command(s) queued, {len(comment.commands) - queued} answered"
    )


def ignored_unread(
    data: dict[str, Any], _repositories: ProjectRepositories, projects: ProjectsConfig
) -> str | None:
    """Why the comment is ignored before anything is read (no command in a person's new
    pull-request comment, a repository no project serves); None when it must be handled."""
    found = _comment_and_projects(data, projects)
    return found if isinstance(found, str) else None


def _comment_and_projects(
    data: dict[str, Any], config: ProjectsConfig
) -> tuple[_Comment, list[str]] | str:
    """The command comment and the projects its repository serves; else why it is none."""
    comment = _command_comment(data)
    if isinstance(comment, str):
        return comment
    projects = _projects_of(config, comment.thread.repo)
    if not projects:
        return f"{comment.thread.repo} serves no project"
    return comment, projects


def _command_comment(data: dict[str, Any]) -> _Comment | str:
    """The new pull-request comment of a person, with its command lines; else why it is none."""
    action = data.get("action")
    if action != CREATED:
        return f"comment {action}" if isinstance(action, str) else "no action"
    if not isinstance(_object(data.get("issue")).get("pull_request"), dict):
        return "not a pull request"
    if _by_bot(data):
        return "comment by a bot"
    body = _object(data.get("comment")).get("body")
    commands = parse_commands(body) if isinstance(body, str) else []
    if not commands:
        return "no command"
    return _read_comment(data, commands) or "comment without id, number, author or repository"


async def _enqueue_line(
    session: AsyncSession,
    comment: _Comment,
    parsed: ParsedLine,
    projects: list[str],
    now: datetime,
) -> bool:
    """A `run_command` for a command Tarmac can run (True), else the reply saying why not."""
    answer = _request_or_reply(comment, parsed, projects)
    if isinstance(answer, CommandRequest):
        await enqueue_command(session, comment.thread, answer, now)
        return True
    await enqueue_reply(session, comment.thread, answer, now)
    return False


def _request_or_reply(
    comment: _Comment, parsed: ParsedLine, projects: list[str]
) -> CommandRequest | str:
    """What to run for a command line, or the reply that answers it at once."""
    if isinstance(parsed, CommandError):
        return usage_reply(parsed.line, parsed.message)
    project, problem = _choose_project(parsed, projects, comment.thread.repo)
    if project is None:
        return reply(parsed.line, REFUSED, problem)
    return CommandRequest(
        verb=parsed.verb.value,
        environment=parsed.environment,
        project=project,
        release_candidate_version=parsed.release_candidate_version,
        force=parsed.force,
        reason=parsed.reason,
        line=parsed.line,
        comment_id=comment.thread.comment_id,
        issue_number=comment.thread.issue_number,
        commenter=comment.author,
        repo_url=comment.repo_url,
    )


def _read_comment(data: dict[str, Any], commands: list[ParsedLine]) -> _Comment | None:
    comment = _object(data.get("comment"))
    comment_id = _integer(comment.get("id"))
    issue_number = _integer(_object(data.get("issue")).get("number"))
    author = _object(comment.get("user")).get("login")
    repository = _object(data.get("repository"))
    repo = repository.get("full_name")
    if comment_id is None or issue_number is None or not _text(author) or not _text(repo):
        return None
    thread = Thread(repo, issue_number, comment_id)
    return _Comment(thread, author, _repo_url(repository, repo), commands)


def _by_bot(data: dict[str, Any]) -> bool:
    """Bots' comments are never commands: Tarmac's own replies, other Apps, `…[bot]` users."""
    comment = _object(data.get("comment"))
    for user in (_object(comment.get("user")), _object(data.get("sender"))):
        login = user.get("login")
        if user.get("type") == BOT_TYPE:
            return True
        if isinstance(login, str) and login.endswith(BOT_LOGIN_SUFFIX):
            return True
    return False


def _projects_of(config: ProjectsConfig, repo: str) -> list[str]:
    """The names of the projects a repository serves (GitHub names are case-insensitive)."""
    return sorted(p.name for p in config.projects if p.repo.lower() == repo.lower())


def _choose_project(command: Command, projects: list[str], repo: str) -> tuple[str | None, str]:
    """The project the command is for, or None and the reply saying why none is."""
    names = ", ".join(projects)
    if command.project is None:
        if len(projects) == 1:
            return projects[0], ""
        return None, SEVERAL_PROJECTS.format(repo=repo, names=names)
    if command.project in projects:
        return command.project, ""
    return None, NOT_THIS_REPOSITORYS_PROJECT.format(
        repo=repo, project=code(command.project), names=names
    )


async def _handled_before(session: AsyncSession, comment_id: int) -> bool:
    return await enqueued_before(session, comment_key(comment_id))


def _repo_url(repository: dict[str, Any], repo: str) -> str:
    url = repository.get("html_url")
    if isinstance(url, str) and url.startswith(("https://", "http://")) and url.isprintable():
        return url.rstrip("/")
    return REPO_PAGE.format(repo=repo)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and 0 < len(value) <= 200
