"""Commands in a pull-request comment, parsed without I/O.

Grammar, one command per line (the line's surrounding whitespace is ignored)::

    /rollback <environment> [--force [reason ...]] [--project NAME]
    /deploy <release candidate version> to <environment> [--force <reason ...>] [--project NAME]
    /freeze <environment> [reason ...] [--project NAME]
    /unfreeze <environment> [--project NAME]
    /cancel <environment> [--project NAME]
    /approve <environment> [--project NAME]
    /reject <environment> <reason ...> [--project NAME]
    /mark-bad <release candidate version> <reason ...> [--project NAME]
    /clear-bad <release candidate version> [--project NAME]

`--project NAME` may stand anywhere after the verb; it is needed only when the repository
serves several projects. A reason is the rest of the line once the environment (or version)
and flags are taken out, its words joined by single spaces: optional for /freeze and a forced
/rollback (the API's rollback of a manually frozen environment never needed one), required
for a forced /deploy, /reject and /mark-bad. Without `--force`, /deploy and /rollback take no
more words. /approve and /reject act on the environment's newest deployment waiting for
approval; /mark-bad and /clear-bad name a candidate, not an environment (`environment` is
then ''). `/reject` takes an environment, like every verb that acts on a deployment, so
marking a candidate bad and clearing the mark are a verb pair of their own, named as the audit
and the use cases name them (`mark_bad`, `clear_bad`), like `/freeze` and `/unfreeze`.

Which lines can be commands at all is decided by reading the comment as Markdown
(bot/github/commands/lines.py): a line counts only if '/' is the first text of a line of a
top-level paragraph, so code blocks, quotes, HTML, `<details>`, lists and tables never run.
Slash words Tarmac does not own are ignored (`/lgtm`, `/cc @x`: other bots use slash commands
too). Verbs are lower-case and case-sensitive. A line that starts with one of Tarmac's verbs
but is malformed becomes a `CommandError`, so the reply can say what is wrong rather than stay
silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.config.projects_file import is_valid_name
from bot.core.errors import INVALID_RC_VERSION
from bot.domain.versions import parse_rc_version
from bot.github.commands.lines import command_lines

MAX_BODY_LENGTH = 65536
MAX_COMMANDS = 10
MAX_REASON_LENGTH = 2000  # as the REST API's freeze reason
MAX_QUOTED_LENGTH = 40  # user text echoed in a message is cut to this

FORCE_FLAG = "--force"
PROJECT_FLAG = "--project"
DEPLOY_KEYWORD = "to"

TOO_MANY_COMMANDS = f"At most {MAX_COMMANDS} commands per comment"
MISSING_ENVIRONMENT = "Missing environment"
MISSING_VERSION = "Missing release candidate version"
MISSING_REASON = "Missing reason"
DEPLOY_SHAPE = "Expected a release candidate version, 'to' and an environment"
FORCE_ONLY_TO_DEPLOY = "--force is only for /deploy and /rollback"
FORCE_NEEDS_REASON = "--force needs a reason: write it after --force"
MISSING_PROJECT_NAME = "--project needs a project name"
REASON_TOO_LONG = f"Reason is longer than {MAX_REASON_LENGTH} characters"


class CommandVerb(StrEnum):
    ROLLBACK = "rollback"
    DEPLOY = "deploy"
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    CANCEL = "cancel"
    APPROVE = "approve"
    REJECT = "reject"
    MARK_BAD = "mark-bad"
    CLEAR_BAD = "clear-bad"


USAGE = {
    CommandVerb.ROLLBACK: "usage: /rollback <environment> [--force [reason]] [--project NAME]",
    CommandVerb.DEPLOY: (
        "usage: /deploy <release candidate version> to <environment> [--force <reason>] "
        "[--project NAME]"
    ),
    CommandVerb.FREEZE: "usage: /freeze <environment> [reason] [--project NAME]",
    CommandVerb.UNFREEZE: "usage: /unfreeze <environment> [--project NAME]",
    CommandVerb.CANCEL: "usage: /cancel <environment> [--project NAME]",
    CommandVerb.APPROVE: "usage: /approve <environment> [--project NAME]",
    CommandVerb.REJECT: "usage: /reject <environment> <reason> [--project NAME]",
    CommandVerb.MARK_BAD: (
        "usage: /mark-bad <release candidate version> <reason> [--project NAME]"
    ),
    CommandVerb.CLEAR_BAD: "usage: /clear-bad <release candidate version> [--project NAME]",
}

FORCED_VERBS = frozenset({CommandVerb.ROLLBACK, CommandVerb.DEPLOY})
# The verbs that name a release candidate rather than an environment.
CANDIDATE_VERBS = frozenset({CommandVerb.MARK_BAD, CommandVerb.CLEAR_BAD})
# Whether the verb takes a reason: the words after its environment (or version).
_REASON_REQUIRED = frozenset({CommandVerb.REJECT, CommandVerb.MARK_BAD})
_REASON_OPTIONAL = frozenset({CommandVerb.FREEZE})
NO_ENVIRONMENT = ""


@dataclass(frozen=True)
class Command:
    verb: CommandVerb
    environment: str  # NO_ENVIRONMENT for the CANDIDATE_VERBS
    project: str | None
    release_candidate_version: str | None  # /deploy and the CANDIDATE_VERBS
    force: bool  # /deploy and /rollback only
    reason: str | None  # /freeze, /reject, /mark-bad, and a forced /deploy or /rollback
    line: str  # as written, without surrounding whitespace


@dataclass(frozen=True)
class CommandError:
    line: str
    message: str


ParsedLine = Command | CommandError


class _Malformed(Exception):
    """What is wrong with a command line; becomes a CommandError with the verb's usage."""


def parse_commands(body: str) -> list[ParsedLine]:
    """The commands of a comment body, in order; [] when it has none (or is too long)."""
    if len(body) > MAX_BODY_LENGTH:
        return []
    parsed = [item for line in command_lines(body) if (item := _parse_line(line)) is not None]
    if len(parsed) > MAX_COMMANDS:
        return [CommandError(line=parsed[MAX_COMMANDS].line, message=TOO_MANY_COMMANDS)]
    return parsed


def _parse_line(line: str) -> ParsedLine | None:
    """None when the line's slash word is not one of Tarmac's verbs."""
    first, *words = line.split()
    try:
        verb = CommandVerb(first[1:])
    except ValueError:
        return None
    try:
        return _parse_command(verb, words, line)
    except _Malformed as problem:
        return CommandError(line=line, message=f"{problem}; {USAGE[verb]}")


def _parse_command(verb: CommandVerb, words: list[str], line: str) -> Command:
    positional, project, force = _take_flags(words)
    if force and verb not in FORCED_VERBS:
        raise _Malformed(FORCE_ONLY_TO_DEPLOY)
    if project is not None and not is_valid_name(project):
        raise _Malformed(f"Invalid project name {_quote(project)}")
    version: str | None = None
    environment = NO_ENVIRONMENT
    if verb is CommandVerb.DEPLOY:
        version, positional = _take_deploy_version(positional)
    if verb in CANDIDATE_VERBS:
        version, *rest = _take_version(positional)
    else:
        environment, *rest = _take_environment(positional)
    reason = _reason_of(verb, rest, force=force)
    return Command(
        verb=verb,
        environment=environment,
        project=project,
        release_candidate_version=version,
        force=force,
        reason=reason,
        line=line,
    )


def _take_flags(words: list[str]) -> tuple[list[str], str | None, bool]:
    """The words that are not flags, the --project value, and whether --force was given."""
    positional: list[str] = []
    project = None
    force = False
    remaining = iter(words)
    for word in remaining:
        if word == FORCE_FLAG:
            if force:
                raise _Malformed(f"{FORCE_FLAG} given twice")
            force = True
        elif word == PROJECT_FLAG:
            if project is not None:
                raise _Malformed(f"{PROJECT_FLAG} given twice")
            project = next(remaining, None)
            if project is None or project.startswith("--"):
                raise _Malformed(MISSING_PROJECT_NAME)
        elif word.startswith("--") and word != "--":
            raise _Malformed(f"Unknown flag {_quote(word)}")
        else:
            positional.append(word)
    return positional, project, force


def _take_deploy_version(positional: list[str]) -> tuple[str, list[str]]:
    """`<version> to <environment>`: the version, and the words from the environment on."""
    if len(positional) < 3 or positional[1] != DEPLOY_KEYWORD:
        raise _Malformed(DEPLOY_SHAPE)
    return _valid_version(positional[0]), positional[2:]


def _take_version(positional: list[str]) -> list[str]:
    """`<version> ...`: the version, then the words after it."""
    if not positional:
        raise _Malformed(MISSING_VERSION)
    version, *rest = positional
    return [_valid_version(version), *rest]


def _valid_version(version: str) -> str:
    if parse_rc_version(version) is None:
        raise _Malformed(f"{INVALID_RC_VERSION} {_quote(version)}")
    return version


def _take_environment(positional: list[str]) -> list[str]:
    """`<environment> ...`: the environment, then the words after it."""
    if not positional:
        raise _Malformed(MISSING_ENVIRONMENT)
    if not is_valid_name(positional[0]):
        raise _Malformed(f"Invalid environment name {_quote(positional[0])}")
    return positional


def _reason_of(verb: CommandVerb, rest: list[str], *, force: bool) -> str | None:
    """The reason the words after the environment (or version) give, as the verb takes one."""
    if verb in _REASON_REQUIRED or (force and verb is CommandVerb.DEPLOY):
        reason = _reason(rest)
        if reason is None:
            raise _Malformed(FORCE_NEEDS_REASON if force else MISSING_REASON)
        return reason
    if verb in _REASON_OPTIONAL or force:
        return _reason(rest)
    if rest:
        raise _Malformed(f"Unexpected {_quote(rest[0])}")
    return None


def _reason(words: list[str]) -> str | None:
    reason = " ".join(words)
    if len(reason) > MAX_REASON_LENGTH:
        raise _Malformed(REASON_TOO_LONG)
    return reason or None


def _quote(text: str) -> str:
    """User text for a message: quoted, and cut so that a reply stays short."""
    if len(text) > MAX_QUOTED_LENGTH:
        text = text[:MAX_QUOTED_LENGTH] + "…"
    return f"'{text}'"
