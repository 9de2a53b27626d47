"""The transitions over plain values: superseding, canceling, following a run, timing out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from bot.core import errors
from bot.core.errors import DomainError
from bot.domain.statuses import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    RUN_FAILED_MESSAGE,
    TIMED_OUT_MESSAGE,
    DeploymentStatus,
    apply_report,
    cancel_changes,
    ensure_something_to_cancel,
    expire,
    follow_run,
    stuck_before,
    superseded_by,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
S = DeploymentStatus


@dataclass
class D:
    id: int = 1
    status: str = S.PENDING
    updated_at: datetime = T0
    waiting_for: str | None = None
    deploy_end_at: datetime | None = None
    error_message: str | None = None


@pytest.mark.parametrize("status", [*sorted(ACTIVE_STATUSES), S.SUCCESS])
def test_a_deployment_under_way_or_done_supersedes_the_older_active_ones(status: str) -> None:
    older = [D(3), D(1)]
    assert superseded_by(D(4, status), [D(5), *older]) == older


@pytest.mark.parametrize("status", [S.FAILURE, S.ERROR, S.CANCELED, S.UNKNOWN])
def test_a_record_of_a_failed_attempt_supersedes_nothing(status: str) -> None:
    assert superseded_by(D(4, status), [D(3), D(1)]) == []


@pytest.mark.parametrize("status", [*sorted(ACTIVE_STATUSES), S.UNKNOWN])
def test_what_has_not_ended_may_be_canceled(status: str) -> None:
    assert cancel_changes(D(status=status))


def test_a_retried_cancel_changes_nothing_and_an_ended_deployment_stays() -> None:
    assert not cancel_changes(D(status=S.CANCELED))
    for status in FINAL_STATUSES - {S.CANCELED}:
        with pytest.raises(DomainError) as caught:
            cancel_changes(D(status=status))
        assert caught.value.message == errors.DEPLOYMENT_ALREADY_ENDED


def test_cancel_everything_under_way_needs_something_under_way() -> None:
    ensure_something_to_cancel([D()])
    with pytest.raises(DomainError) as caught:
        ensure_something_to_cancel([])
    assert caught.value.message == errors.NOTHING_TO_CANCEL


def test_a_report_brings_its_error_message() -> None:
    deployment = D(status=S.IN_PROGRESS)
    apply_report(deployment, S.FAILURE, "boom", LATER)
    assert (deployment.status, deployment.error_message) == (S.FAILURE, "boom")
    assert deployment.deploy_end_at == LATER
    apply_report(deployment, S.FAILURE, None, LATER + LATER.resolution)
    assert deployment.error_message == "boom"
    assert deployment.updated_at == LATER


def test_a_deployment_follows_its_run_until_it_is_final() -> None:
    deployment = D()
    assert follow_run(deployment, S.IN_PROGRESS, LATER)
    assert not follow_run(deployment, S.IN_PROGRESS, LATER)  # nothing new
    assert follow_run(deployment, S.ERROR, LATER)
    assert deployment.error_message == RUN_FAILED_MESSAGE
    assert not follow_run(deployment, S.SUCCESS, LATER)  # final stays final
    assert deployment.status == S.ERROR


def test_a_deployment_waiting_for_approval_moves_only_when_its_run_ends() -> None:
    deployment = D(waiting_for="production approval")
    assert not follow_run(deployment, S.IN_PROGRESS, LATER)
    assert follow_run(deployment, S.CANCELED, LATER)
    assert deployment.waiting_for is None


def test_a_stuck_deployment_times_out_in_error() -> None:
    assert stuck_before(LATER, 5) == T0
    deployment = D(status=S.IN_PROGRESS)
    expire(deployment, 30, LATER)
    assert deployment.status == S.ERROR
    assert deployment.error_message == TIMED_OUT_MESSAGE.format(minutes=30)
    assert deployment.deploy_end_at == LATER
