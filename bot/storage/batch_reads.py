"""What the deliveries of one inbox batch read once, in the batch's write transaction, instead
of once each (bot/github/inbound/inbox.py): a repository's projects, whether a project has an
environment that takes auto-deploy, which projects are locked, and the releases and RCs the
batch's tags name.

Kept only what nothing else changes while the transaction runs: projects and which
environments take auto-deploy change only in the projects file's sync, a transaction of its
own; a lock lasts until the transaction ends; and the releases and RCs are read with their
project locked (PostgreSQL; on SQLite the transaction holds the only write lock), while an RC
is made only by `bot.app.releases.create_release_candidate`, which takes that lock first, and
in this transaction records it here. A batch that fails is handled again in new transactions,
each with a new `BatchReads`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.storage.models import Project, Release, ReleaseCandidate


@dataclass
class BatchReads:
    # Lower-case repository -> its projects (not removed).
    projects: dict[str, list[Project]] = field(default_factory=dict)
    # Project id -> whether an environment of it takes auto-deploy (not removed; paused or not).
    auto_deploys: dict[int, bool] = field(default_factory=dict)
    # Ids of the projects locked in this transaction (PostgreSQL's `SELECT … FOR UPDATE`).
    locked: set[int] = field(default_factory=set)
    # (project id, release version) -> the release; None: there is none.
    releases: dict[tuple[int, str], Release | None] = field(default_factory=dict)
    # (project id, RC version) -> the RC; None: there is none.
    candidates: dict[tuple[int, str], ReleaseCandidate | None] = field(default_factory=dict)

    def knows(self, project_id: int, release: str, version: str) -> bool:
        """Whether the release and the RC are both known, each made or known not to be."""
        return (project_id, release) in self.releases and (project_id, version) in self.candidates

    def made(self, candidate: ReleaseCandidate, release: Release) -> None:
        """The transaction made `candidate` (and maybe `release`): later look-ups find them."""
        self.releases[(candidate.project_id, release.version)] = release
        self.candidates[(candidate.project_id, candidate.version)] = candidate
