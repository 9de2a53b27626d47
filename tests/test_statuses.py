"""Deployment statuses: when a report opens a new deployment, and what a status change does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.statuses import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    DeploymentKind,
    DeploymentStatus,
    apply_status,
    is_final,
    is_open,
    report_starts_new_deployment,
)
from bot.storage.models import Deployment

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OPEN = [DeploymentStatus.UNKNOWN, *sorted(ACTIVE_STATUSES)]
FINAL = sorted(FINAL_STATUSES)


def deployment(status: DeploymentStatus, *, ended: datetime | None = None) -> Deployment:
    return Deployment(
        kind=DeploymentKind.DEPLOY,
        status=status,
        deploy_start_at=T0,
        deploy_end_at=ended,
        updated_at=T0,
    )


def test_every_status_is_active_final_or_unknown() -> None:
    assert ACTIVE_STATUSES.isdisjoint(FINAL_STATUSES)
    assert set(DeploymentStatus) == ACTIVE_STATUSES | FINAL_STATUSES | {"unknown"}
    assert is_open(DeploymentStatus.UNKNOWN)
    assert not is_final(DeploymentStatus.UNKNOWN)


@pytest.mark.parametrize("reported", list(DeploymentStatus))
def test_a_report_with_no_deployment_starts_one(reported: DeploymentStatus) -> None:
    assert report_starts_new_deployment(None, reported)


@pytest.mark.parametrize("current", OPEN)
@pytest.mark.parametrize("reported", list(DeploymentStatus))
def test_a_report_updates_an_open_deployment(
    current: DeploymentStatus, reported: DeploymentStatus
) -> None:
    assert not report_starts_new_deployment(deployment(current), reported)


@pytest.mark.parametrize("current", FINAL)
def test_the_same_final_status_again_is_a_retry(current: DeploymentStatus) -> None:
    assert not report_starts_new_deployment(deployment(current, ended=T0), current)


@pytest.mark.parametrize(
    ("current", "reported"),
    [
        (current, reported)
        for current in FINAL
        for reported in DeploymentStatus
        if reported != current
    ],
)
def test_another_status_after_a_final_one_is_a_new_attempt(
    current: DeploymentStatus, reported: DeploymentStatus
) -> None:
    assert report_starts_new_deployment(deployment(current, ended=T0), reported)


def test_an_active_status_moves_the_deployment_and_leaves_it_unfinished() -> None:
    moved = deployment(DeploymentStatus.PENDING)
    later = T0 + timedelta(seconds=5)
    assert apply_status(moved, DeploymentStatus.IN_PROGRESS, later)
    assert moved.status == DeploymentStatus.IN_PROGRESS
    assert moved.updated_at == later
    assert moved.deploy_end_at is None


def test_unknown_is_not_an_end() -> None:
    moved = deployment(DeploymentStatus.IN_PROGRESS)
    assert apply_status(moved, DeploymentStatus.UNKNOWN, T0 + timedelta(seconds=5))
    assert moved.deploy_end_at is None


@pytest.mark.parametrize("final", FINAL)
def test_the_first_final_status_sets_deploy_end_at(final: DeploymentStatus) -> None:
    moved = deployment(DeploymentStatus.IN_PROGRESS)
    ended = T0 + timedelta(minutes=3)
    assert apply_status(moved, final, ended)
    assert moved.status == final
    assert moved.deploy_end_at == ended
    assert moved.updated_at == ended


def test_deploy_end_at_is_set_only_once() -> None:
    moved = deployment(DeploymentStatus.PENDING)
    first_end = T0 + timedelta(minutes=1)
    apply_status(moved, DeploymentStatus.SUCCESS, first_end)
    later = T0 + timedelta(minutes=9)
    assert apply_status(moved, DeploymentStatus.ERROR, later)
    assert moved.status == DeploymentStatus.ERROR
    assert moved.deploy_end_at == first_end
    assert moved.updated_at == later


@pytest.mark.parametrize("status", list(DeploymentStatus))
def test_the_same_status_again_changes_nothing(status: DeploymentStatus) -> None:
    ended = T0 if is_final(status) else None
    unchanged = deployment(status, ended=ended)
    assert not apply_status(unchanged, status, T0 + timedelta(hours=1))
    assert unchanged.status == status
    assert unchanged.updated_at == T0
    assert unchanged.deploy_end_at == ended
