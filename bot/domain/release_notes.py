"""The notes of a GitHub Release: the change report since the previous production candidate.

Pull requests first (linked, with their authors), then the commits no pull request holds; cut
to what GitHub takes in a release body, with a line saying how many were left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain.changes import Commit, PullRequest

# GitHub refuses a release body longer than this (422 "body is too long (maximum is 125000
# characters)").
MAX_BODY = 125_000
SHORT_SHA = 7


def release_notes(
    *,
    version: str,
    previous_version: str | None,
    pull_requests: Sequence[PullRequest],
    commits: Sequence[Commit],
    max_length: int = MAX_BODY,
) -> str:
    """The release body: a heading naming what it is measured against, a line per pull
    request, then a line per commit that came in without one; lines that would pass
    `max_length` are left out, and the last line counts them."""
    since = f"since {previous_version}" if previous_version else "the first production release"
    header = [f"## Changes in {version}, {since}", ""]
    if not pull_requests and not commits:
        return "\n".join([*header, "No changes."]) + "\n"
    entries: list[str] = []
    if pull_requests:
        entries += ["### Pull requests", *(_pull_request(pr) for pr in pull_requests)]
    if commits:
        if entries:
            entries.append("")
        entries += ["### Commits without a pull request", *(_commit(c) for c in commits)]
    return _cut(header, entries, len(pull_requests) + len(commits), max_length)


def _pull_request(pr: PullRequest) -> str:
    by = f" by @{pr.author}" if pr.author else ""
    return f"- {_one_line(pr.title)} ([#{pr.number}]({pr.url})){by}"


def _commit(commit: Commit) -> str:
    by = f" ({_one_line(commit.author)})" if commit.author else ""
    return f"- [`{commit.sha[:SHORT_SHA]}`]({commit.url}) {_one_line(commit.message)}{by}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _cut(header: list[str], entries: list[str], items: int, max_length: int) -> str:
    """Header and entries, keeping whole lines while they fit with room for the closing
    count."""
    whole = "\n".join([*header, *entries]) + "\n"
    if len(whole) <= max_length:
        return whole
    kept = list(header)
    length = len("\n".join(kept)) + 1
    shown = 0
    reserve = len(_left_out(items)) + 2
    for entry in entries:
        if length + len(entry) + 1 + reserve > max_length:
            break
        kept.append(entry)
        length += len(entry) + 1
        shown += entry.startswith("- ")
    return "\n".join([*kept, "", _left_out(items - shown)]) + "\n"


def _left_out(count: int) -> str:
    noun = "change" if count == 1 else "changes"
    return f"…and {count} more {noun}, left out to fit GitHub's limit on a release's notes."
