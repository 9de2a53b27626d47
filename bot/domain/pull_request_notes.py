"""The pull-request note: Tarmac's one comment on a pull request saying where it runs.

One line per environment the pull request reached, in the projects' and environments' order,
rendered from what is stored at the time the comment is written, so several queued updates of
one note converge on the latest state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

# Finds the note among a pull request's comments when its id was never recorded (the answer
# to the POST that made it was lost): hidden in the rendered markdown.
NOTE_MARKER = "<!-- tarmac:pull-request-note -->"
NOTE_TITLE = "**Tarmac** · where this pull request runs"
TIME_FORMAT = "%Y-%m-%d %H:%M UTC"


class Presence(StrEnum):
    """Whether the pull request is in an environment's running version."""

    IN = "in"  # came in with `version`
    OUT = "out"  # a rollback to `version` took it out again


@dataclass(frozen=True)
class NoteLine:
    """Where the pull request stands in one environment."""

    project: str
    environment: str
    presence: Presence
    version: str  # the version that brought it in, or that the rollback went back to
    at: datetime


def note_body(lines: Sequence[NoteLine]) -> str:
    """The comment's markdown: the marker, a title and one line per environment, in the order
    given (the projects', then each project's environments'). The project's name leads each
    line only when the pull request reached environments of several projects (a monorepo)."""
    several_projects = len({line.project for line in lines}) > 1
    rendered = [_line(line, with_project=several_projects) for line in lines]
    return "\n".join([NOTE_MARKER, NOTE_TITLE, "", *rendered]) + "\n"


def _line(line: NoteLine, *, with_project: bool) -> str:
    where = f"{line.project} {line.environment}" if with_project else line.environment
    at = line.at.strftime(TIME_FORMAT)
    version = _code(line.version)
    if line.presence is Presence.IN:
        return f"- {where} ✅ {version} since {at}"
    return f"- {where} ↩️ rolled back to {version} at {at}"


def _code(text: str) -> str:
    """Inline code; a backtick (which git allows in a tag) would end it early."""
    quoted = text.replace("`", "'")
    return f"`{quoted}`"
