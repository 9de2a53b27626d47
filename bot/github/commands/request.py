"""A command to run: what a `run_command` outbox item carries, from the comment that asked."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bot.domain.approvals import GITHUB_ACTOR_PREFIX

ACTOR_PREFIX = GITHUB_ACTOR_PREFIX


@dataclass(frozen=True)
class CommandRequest:
    """The parsed command, the project chosen for it, and where it was written."""

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
