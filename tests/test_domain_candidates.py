"""What a new RC must be, whether one may be deployed, how its build ends: no database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from bot.core import errors
from bot.core.errors import DomainError
from bot.domain.candidates import (
    BUILD_RUN_FAILED,
    MAX_BUILD_ERROR_LENGTH,
    BuildResult,
    build_result,
    build_timed_out,
    ensure_deployable,
    ensure_same_commit,
    new_candidate,
)
from bot.domain.statuses import BuildStatus

SHA = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Project:
    repo: str = "acme/backend"
    build_workflow: str | None = "build.yml"
    removed_at: datetime | None = None


@dataclass
class Candidate:
    commit_sha: str = SHA
    build_status: str = BuildStatus.READY


def refusal(
    project: Project | None = None,
    *,
    version: str = "v1-rc1",
    repo: str = "acme/backend",
    commit: str = SHA,
    build: bool = False,
) -> str:
    with pytest.raises(DomainError) as caught:
        new_candidate(project or Project(), version=version, repo=repo, commit=commit, build=build)
    return caught.value.message


def test_a_new_candidate_is_parsed_and_waits_for_its_build() -> None:
    new = new_candidate(
        Project(), version="v1.4.0-rc2", repo="ACME/Backend", commit=SHA.upper(), build=True
    )
    assert (new.version.release, new.version.number) == ("v1.4.0", 2)
    assert new.commit_sha == SHA
    assert new.build_status == BuildStatus.BUILDING
    unbuilt = new_candidate(
        Project(), version="v1-rc1", repo="acme/backend", commit=SHA, build=False
    )
    assert unbuilt.build_status == BuildStatus.READY


def test_a_new_candidate_is_refused_in_order() -> None:
    removed = Project(removed_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert refusal(removed, version="nope") == errors.PROJECT_REMOVED
    assert refusal(version="v1-rc01", repo="acme/other") == errors.INVALID_RC_VERSION
    assert refusal(repo="acme/other", commit="abc") == errors.REPOSITORY_NOT_FOUND
    assert refusal(commit="abc") == errors.INVALID_COMMIT
    assert refusal(Project(build_workflow=None), build=True) == errors.NO_BUILD_WORKFLOW


def test_the_same_rc_at_another_commit_is_refused() -> None:
    new = new_candidate(Project(), version="v1-rc1", repo="acme/backend", commit=SHA, build=False)
    ensure_same_commit(Candidate(), new)
    with pytest.raises(DomainError) as caught:
        ensure_same_commit(Candidate(commit_sha="f" * 40), new)
    assert caught.value.message == errors.RC_COMMIT_CONFLICT


@pytest.mark.parametrize(
    ("status", "refused"),
    [
        (BuildStatus.READY, None),
        (BuildStatus.BUILDING, errors.RC_STILL_BUILDING),
        (BuildStatus.FAILED, errors.RC_BUILD_FAILED),
    ],
)
def test_only_a_built_candidate_is_deployable(status: BuildStatus, refused: str | None) -> None:
    if refused is None:
        ensure_deployable(Candidate(build_status=status))
        return
    with pytest.raises(DomainError) as caught:
        ensure_deployable(Candidate(build_status=status))
    assert caught.value.message == refused


def test_a_finished_build_is_ready_or_failed_with_why() -> None:
    assert build_result(succeeded=True, error="ignored") == BuildResult(BuildStatus.READY, None)
    assert build_result(succeeded=False, error=None) == BuildResult(
        BuildStatus.FAILED, BUILD_RUN_FAILED
    )
    long = build_result(succeeded=False, error="x" * (MAX_BUILD_ERROR_LENGTH + 5))
    assert long.error == "x" * MAX_BUILD_ERROR_LENGTH


def test_a_build_times_out_only_past_its_minutes() -> None:
    made = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

    assert not build_timed_out(made, 30, made + timedelta(minutes=30))
    assert build_timed_out(made, 30, made + timedelta(minutes=30, seconds=1))
    assert not build_timed_out(made, 60, made + timedelta(minutes=45))
