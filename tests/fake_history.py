"""A repository's history for the fake GitHub: commits with parents and files, pull requests
merged the three ways GitHub merges them, and the answers of the endpoints that read them
(compare, one commit, the closed pull requests, a commit's pull requests), paginated as GitHub
paginates them."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

MergeStyle = Literal["squash", "merge", "rebase"]
FILES_PAGE = 300  # GitHub lists a commit's files 300 a page


@dataclass
class FakeCommit:
    sha: str
    message: str
    parents: list[str]
    files: list[str]
    author: str | None  # login; None: no GitHub account (the git name is shown)
    at: datetime


@dataclass
class FakePullRequest:
    number: int
    title: str
    author: str
    commits: list[str]  # the branch's commits
    merge_commit_sha: str | None = None
    merged_at: datetime | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class History:
    """One repository's default branch and its pull requests."""

    def __init__(self, repo: str, start: datetime | None = None) -> None:
        self.repo = repo
        self.commits: dict[str, FakeCommit] = {}
        self.pulls: list[FakePullRequest] = []
        self._time = start or datetime(2026, 11, 1, tzinfo=UTC)
        self._numbers = itertools.count(1)
        self._serial = itertools.count(1)
        self.tip: str | None = None
        self.tip = self.commit("initial commit", files=["README.md"])

    # --- writing history -------------------------------------------------------------

    def _tick(self) -> datetime:
        self._time += timedelta(minutes=1)
        return self._time

    def _new(self, message: str, parents: list[str], files: list[str], author: str | None) -> str:
        sha = hashlib.sha1(f"{self.repo}:{next(self._serial)}:{message}".encode()).hexdigest()
        self.commits[sha] = FakeCommit(sha, message, parents, list(files), author, self._tick())
        return sha

    def commit(
        self, message: str, *, files: list[str] | None = None, author: str | None = "octocat"
    ) -> str:
        """A commit pushed straight to the default branch."""
        parents = [self.tip] if self.tip else []
        self.tip = self._new(message, parents, files or [f"file-{len(self.commits)}.txt"], author)
        return self.tip

    def merge_pull_request(
        self,
        title: str,
        changes: list[list[str]],
        *,
        style: MergeStyle = "squash",
        author: str = "octocat",
    ) -> int:
        """A pull request of one commit per entry of `changes` (its files), branched from the
        tip and merged as GitHub merges with `style`; returns its number."""
        assert self.tip is not None
        number = next(self._numbers)
        base = self.tip
        branch: list[str] = []
        parent = base
        for index, files in enumerate(changes):
            parent = self._new(f"{title} ({index + 1})", [parent], files, author)
            branch.append(parent)
        everything = sorted({name for files in changes for name in files})
        if style == "squash":
            merged = self._new(f"{title} (#{number})", [self.tip], everything, author)
        elif style == "merge":
            message = f"Merge pull request #{number} from {author}/branch-{number}\n\n{title}"
            merged = self._new(message, [self.tip, branch[-1]], everything, author)
        else:  # rebase: the branch's commits again, on the tip, the last one's sha recorded
            merged = self.tip
            for sha in list(branch):
                original = self.commits[sha]
                merged = self._new(original.message, [merged], original.files, author)
                branch.append(merged)  # GitHub knows the rebased commits as the PR's too
        self.tip = merged
        when = self.commits[merged].at
        self.pulls.append(
            FakePullRequest(number, title, author, branch, merged, when, updated_at=when)
        )
        return number

    def close_without_merging(self, title: str) -> int:
        number = next(self._numbers)
        self.pulls.append(FakePullRequest(number, title, "octocat", [], updated_at=self._tick()))
        return number

    # --- reading it, as GitHub answers ---------------------------------------------------

    def ancestors(self, sha: str) -> set[str]:
        seen: set[str] = set()
        todo = [sha]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            todo.extend(self.commits[current].parents)
        return seen

    def compare(self, base: str, head: str) -> dict[str, Any]:
        """The comparison as GitHub's compare answers it, with every commit (oldest first):
        the caller pages them."""
        head_side, base_side = self.ancestors(head), self.ancestors(base)
        ahead = head_side - base_side
        behind = base_side - head_side
        if not ahead and not behind:
            status = "identical"
        elif not behind:
            status = "ahead"
        elif not ahead:
            status = "behind"
        else:
            status = "diverged"
        commits = sorted((self.commits[sha] for sha in ahead), key=lambda c: c.at)
        return {
            "status": status,
            "ahead_by": len(ahead),
            "behind_by": len(behind),
            "total_commits": len(ahead),
            "commits": [self.commit_json(c) for c in commits],
        }

    def commit_json(self, commit: FakeCommit) -> dict[str, Any]:
        url = f"https://github.com/{self.repo}/commit/{commit.sha}"
        person = {
            "name": commit.author or "Jane Hacker",
            "email": "dev@example.com",
            "date": commit.at.isoformat().replace("+00:00", "Z"),
        }
        return {
            "sha": commit.sha,
            "node_id": "C_" + commit.sha[:10],
            "url": f"https://api.github.com/repos/{self.repo}/commits/{commit.sha}",
            "html_url": url,
            "commit": {"message": commit.message, "author": person, "committer": person},
            "author": {"login": commit.author} if commit.author else None,
            "parents": [{"sha": p} for p in commit.parents],
        }

    def pull_json(self, pull: FakePullRequest) -> dict[str, Any]:
        def stamp(value: datetime | None) -> str | None:
            return value.isoformat().replace("+00:00", "Z") if value else None

        return {
            "number": pull.number,
            "title": pull.title,
            "state": "closed",
            "user": {"login": pull.author},
            "html_url": f"https://github.com/{self.repo}/pull/{pull.number}",
            "merged_at": stamp(pull.merged_at),
            "merge_commit_sha": pull.merge_commit_sha,
            "updated_at": stamp(pull.updated_at),
        }

    def pulls_of_commit(self, sha: str) -> list[dict[str, Any]]:
        return [
            self.pull_json(p) for p in self.pulls if sha in p.commits or p.merge_commit_sha == sha
        ]

    def closed_by_update(self) -> list[dict[str, Any]]:
        ordered = sorted(self.pulls, key=lambda p: (p.updated_at, p.number), reverse=True)
        return [self.pull_json(p) for p in ordered]

    def files_json(self, commit: FakeCommit) -> list[dict[str, Any]]:
        return [{"filename": name, "status": "modified"} for name in commit.files]
