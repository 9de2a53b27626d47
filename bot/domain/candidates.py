"""Release candidates: what a new one must be, whether one may be deployed, how its build ends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from bot.core import errors
from bot.domain.statuses import BuildStatus
from bot.domain.versions import RcVersion, normalize_commit_sha, parse_rc_version

BUILD_RUN_FAILED = "The build workflow run did not succeed"
MAX_BUILD_ERROR_LENGTH = 2000


class ProjectFacts(Protocol):
    @property
    def repo(self) -> str: ...

    @property
    def build_workflow(self) -> str | None: ...

    @property
    def removed_at(self) -> datetime | None: ...


class CandidateFacts(Protocol):
    @property
    def commit_sha(self) -> str: ...

    @property
    def build_status(self) -> str: ...


@dataclass(frozen=True)
class NewCandidate:
    """An RC as it is to be created: its parsed version, commit and first build status."""

    version: RcVersion
    commit_sha: str
    build_status: BuildStatus


def ensure_rc_version(version: str) -> RcVersion:
    parsed = parse_rc_version(version)
    if parsed is None:
        raise errors.invalid(errors.INVALID_RC_VERSION)
    return parsed


def new_candidate(
    project: ProjectFacts, *, version: str, repo: str, commit: str, build: bool
) -> NewCandidate:
    """RC `version` of `project` at `commit`, checked in order: the project takes new RCs, the
    version is an RC version, the repository is the project's, the commit is a full SHA, and a
    build is asked for only of a project with a build workflow. With `build` the RC waits for
    the build (`building`); without, it is `ready` at once."""
    if project.removed_at is not None:
        raise errors.invalid(errors.PROJECT_REMOVED)
    parsed = ensure_rc_version(version)
    if repo.lower() != project.repo.lower():
        raise errors.not_found(errors.REPOSITORY_NOT_FOUND)
    sha = normalize_commit_sha(commit)
    if sha is None:
        raise errors.invalid(errors.INVALID_COMMIT)
    if build and project.build_workflow is None:
        raise errors.invalid(errors.NO_BUILD_WORKFLOW)
    return NewCandidate(parsed, sha, BuildStatus.BUILDING if build else BuildStatus.READY)


def ensure_same_commit(existing: CandidateFacts, new: NewCandidate) -> None:
    """An RC asked for again: the same at the same commit is accepted as it is (a retry, the
    tag's other event); at another commit it is refused, since an RC never changes."""
    if existing.commit_sha != new.commit_sha:
        raise errors.conflict(errors.RC_COMMIT_CONFLICT)


def ensure_deployable(candidate: CandidateFacts) -> None:
    """Every environment gets the one build: an RC still building or whose build failed is
    not deployed."""
    if candidate.build_status == BuildStatus.BUILDING:
        raise errors.invalid(errors.RC_STILL_BUILDING)
    if candidate.build_status == BuildStatus.FAILED:
        raise errors.invalid(errors.RC_BUILD_FAILED)


@dataclass(frozen=True)
class BuildResult:
    status: BuildStatus
    error: str | None


def build_result(*, succeeded: bool, error: str | None) -> BuildResult:
    """How a finished build leaves its RC: `ready`, or `failed` with why (by default: the run
    did not succeed), cut to what is stored."""
    if succeeded:
        return BuildResult(BuildStatus.READY, None)
    return BuildResult(BuildStatus.FAILED, (error or BUILD_RUN_FAILED)[:MAX_BUILD_ERROR_LENGTH])


def build_timed_out(created_at: datetime, timeout_minutes: int, now: datetime) -> bool:
    """Whether a build still under way has had its time: `build.timeout_minutes` after its RC
    was made."""
    return now - created_at > timedelta(minutes=timeout_minutes)
