"""What a comparison, a commit or a pull request is to Tarmac, read from GitHub's JSON."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.domain.changes import Commit, MergedPullRequest, PullRequest, RangeCommit
from bot.github.payloads import github_time

MAX_MESSAGE = 500  # a commit's first line, as stored and shown
MAX_TITLE = 500


def read_range_commit(found: dict[str, Any]) -> RangeCommit:
    """A commit of a comparison's `commits`."""
    detail = found.get("commit") or {}
    git_author = detail.get("author") or {}
    account = found.get("author") or {}
    message = str(detail.get("message") or "").split("\n", 1)[0][:MAX_MESSAGE]
    return RangeCommit(
        commit=Commit(
            sha=str(found["sha"]),
            message=message,
            author=account.get("login") or git_author.get("name"),
            url=str(found.get("html_url") or ""),
        ),
        parents=tuple(str(p["sha"]) for p in found.get("parents") or ()),
        committed_at=github_time((detail.get("committer") or {}).get("date")),
    )


def read_pull_request(found: dict[str, Any]) -> PullRequest:
    return PullRequest(
        number=int(found["number"]),
        title=str(found.get("title") or "")[:MAX_TITLE],
        author=(found.get("user") or {}).get("login"),
        url=str(found.get("html_url") or ""),
        merged_at=github_time(found.get("merged_at")),
    )


def read_merged(found: dict[str, Any]) -> MergedPullRequest | None:
    """A pull request of the closed list; None when it was closed without being merged."""
    if not found.get("merged_at"):
        return None
    return MergedPullRequest(read_pull_request(found), found.get("merge_commit_sha"))


def updated_at(found: dict[str, Any]) -> datetime | None:
    return github_time(found.get("updated_at"))


def changed_files(found: dict[str, Any]) -> list[str]:
    """The paths a commit changed, a renamed file's old name too (moving a file out of a
    project's paths touches the project)."""
    names: list[str] = []
    for entry in found.get("files") or ():
        names.append(str(entry["filename"]))
        if entry.get("previous_filename"):
            names.append(str(entry["previous_filename"]))
    return names
