"""What a range of commits holds, as a change report names it: its pull requests and commits.

Plain values: the change report (GitHub's compare API) builds them, the pull-request notes and
the GitHub Release notes read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class PullRequest:
    number: int
    title: str
    author: str | None  # login
    url: str
    merged_at: datetime | None


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str  # its first line
    author: str | None  # login, or the commit's author name when GitHub knows no account
    url: str
