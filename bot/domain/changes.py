"""What ships: the commits between two candidates and the pull requests they belong to.

Pure rules over plain values; bot/github/history.py reads them from GitHub's JSON and
bot/github/outbound/change_reports.py fetches them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import pathspec


@dataclass(frozen=True)
class Commit:
    sha: str
    message: str  # the first line
    author: str | None  # login, or the git author's name when GitHub knows no account
    url: str


@dataclass(frozen=True)
class PullRequest:
    number: int
    title: str
    author: str | None  # login
    url: str
    merged_at: datetime | None


@dataclass(frozen=True)
class RangeCommit:
    """A commit of a compared range as the attribution needs it: with its parents."""

    commit: Commit
    parents: tuple[str, ...]
    committed_at: datetime | None


@dataclass(frozen=True)
class MergedPullRequest:
    """A merged pull request as GitHub lists it: the commit its merge made on the base branch
    (the merge commit, the squashed commit, or the last rebased commit)."""

    pull_request: PullRequest
    merge_commit_sha: str | None


@dataclass(frozen=True)
class ChangeReport:
    """From `base` to `head`. `diverged`: base is not an ancestor of head (history was
    rewritten, or head is older), so the report lists nothing instead of guessing."""

    base_commit: str
    head_commit: str
    ahead_by: int
    behind_by: int
    diverged: bool
    commits: tuple[Commit, ...] = ()
    pull_requests: tuple[PullRequest, ...] = ()


# GitHub's compare `status`: head is behind base, or both moved on from a common ancestor.
DIVERGED_STATUSES = frozenset({"behind", "diverged"})


def is_diverged(compare_status: str) -> bool:
    """Whether a compare's status means base is not an ancestor of head."""
    return compare_status in DIVERGED_STATUSES


@dataclass(frozen=True)
class PathFilter:
    """A project's `paths:` (gitignore-style globs); no globs: every commit counts."""

    globs: tuple[str, ...] = ()
    _spec: pathspec.PathSpec[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_spec", pathspec.PathSpec.from_lines("gitignore", self.globs))

    @property
    def active(self) -> bool:
        return bool(self.globs)

    @property
    def key(self) -> str:
        """What a stored report is filed under: the same globs, in any order, the same key."""
        return "\n".join(sorted(set(self.globs)))

    def touches(self, files: Iterable[str]) -> bool:
        """Whether a commit that changed `files` (old and new names) counts."""
        return not self.active or any(self._spec.match_file(name) for name in files)


def commits_that_count(
    commits: Sequence[RangeCommit], touches: Mapping[str, bool], paths: PathFilter
) -> list[RangeCommit]:
    """The range's commits that touch the project's paths (`touches`, by sha, from each
    commit's files: `PathFilter.touches`); every commit without a filter."""
    if not paths.active:
        return list(commits)
    return [c for c in commits if touches.get(c.commit.sha, False)]


@dataclass(frozen=True)
class Attribution:
    """Which pull request each counted commit belongs to, and the commits the merged list
    could not place (pushed straight to the branch, or rebased from a PR whose last commit
    is elsewhere): those are asked of GitHub one by one."""

    by_commit: dict[str, PullRequest]
    unplaced: list[str]


def attribute_commits(
    commits: Sequence[RangeCommit],
    counted: Sequence[RangeCommit],
    merged: Iterable[MergedPullRequest],
) -> Attribution:
    """Place each counted commit in its pull request, from the merged PRs' merge commits.

    A PR's merge commit in the range places itself; for a true merge (two parents) the commits
    it brought in (reachable from its second parent and not from its first, within the range)
    are the PR's too. Whatever is left is unplaced.
    """
    in_range = {c.commit.sha: c for c in commits}
    by_merge = {
        m.merge_commit_sha: m.pull_request
        for m in merged
        if m.merge_commit_sha is not None and m.merge_commit_sha in in_range
    }
    owner: dict[str, PullRequest] = dict(by_merge)
    for sha, pull_request in by_merge.items():
        parents = in_range[sha].parents
        if len(parents) < 2:
            continue
        mainline = _reachable(in_range, [parents[0]])
        for brought in _reachable(in_range, parents[1:]) - mainline:
            owner.setdefault(brought, pull_request)
    placed = {c.commit.sha: owner[c.commit.sha] for c in counted if c.commit.sha in owner}
    unplaced = [c.commit.sha for c in counted if c.commit.sha not in owner]
    return Attribution(placed, unplaced)


def _reachable(in_range: Mapping[str, RangeCommit], starts: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = [sha for sha in starts if sha in in_range]
    while todo:
        sha = todo.pop()
        if sha in seen:
            continue
        seen.add(sha)
        todo.extend(p for p in in_range[sha].parents if p in in_range and p not in seen)
    return seen


def pull_requests_in_order(placed: Iterable[PullRequest]) -> list[PullRequest]:
    """Each pull request once, in the order they were merged (unknown times last)."""
    unique = {pr.number: pr for pr in placed}
    return sorted(
        unique.values(),
        key=lambda pr: (pr.merged_at is None, pr.merged_at or datetime.min, pr.number),
    )


def oldest_listing_needed(commits: Sequence[RangeCommit]) -> datetime | None:
    """How far back the merged pull requests must be listed (newest updated first): a PR
    merged into the range was updated no earlier than the range's oldest commit."""
    times = [c.committed_at for c in commits if c.committed_at is not None]
    return min(times) if times else None


class Direction(StrEnum):
    """What a deployment did to an environment's pull requests, from the report between what
    ran there before (base) and the deployed candidate (head)."""

    CAME_IN = "came_in"  # head is ahead: the report's PRs are now in the environment
    WENT_OUT = "went_out"  # head is behind (a rollback): the reverse report's PRs left it
    UNKNOWN = "unknown"  # both moved on (history rewritten): nothing is said


def shipped_direction(report: ChangeReport) -> Direction:
    if not report.diverged:
        return Direction.CAME_IN
    if report.ahead_by == 0:
        return Direction.WENT_OUT
    return Direction.UNKNOWN
