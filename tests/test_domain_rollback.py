"""The running version and the rollback rule over plain values: no database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from bot.core import errors
from bot.core.errors import DomainError
from bot.domain.rollback import (
    TargetSearch,
    ensure_may_roll_back,
    ensure_target,
    rollback_target,
    rolled_away_from,
    running_deployment,
    target_search,
    to_remember,
)
from bot.domain.statuses import DeploymentStatus
from tests.domain_values import Env

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
S = DeploymentStatus


@dataclass
class D:
    id: int
    release_candidate_id: int
    status: str
    rolled_back_at: datetime | None = None


def rc_of(deployment: D | None) -> int | None:
    return deployment.release_candidate_id if deployment is not None else None


def history(*entries: tuple[int, str]) -> list[D]:
    """Deployments oldest first as (RC, status); returned newest first, as the rule reads."""
    return [D(n, rc, status) for n, (rc, status) in enumerate(entries, 1)][::-1]


def roll_back(past: list[D]) -> list[D]:
    """What a rollback leaves in memory: the RC rolled away from marked, a pending rollback."""
    target = ensure_target(rollback_target(past))
    away = rolled_away_from(past[0], target)
    for deployment in to_remember(d for d in past if d.release_candidate_id == away):
        deployment.rolled_back_at = T0
    return [D(past[0].id + 1, target.release_candidate_id, S.PENDING), *past]


def test_the_running_version_is_the_newest_success() -> None:
    past = history((1, S.SUCCESS), (2, S.SUCCESS), (3, S.FAILURE), (4, S.IN_PROGRESS))
    running = running_deployment(past)
    assert rc_of(running) == 2
    assert running_deployment(history((1, S.FAILURE))) is None


def test_a_rollback_goes_back_to_the_rc_before_the_running_one() -> None:
    past = history((1, S.SUCCESS), (2, S.SUCCESS), (3, S.SUCCESS))
    assert target_search(past[0]) == TargetSearch(excluded_candidate_id=3)
    target = rollback_target(past)
    assert rc_of(target) == 2
    assert target is not None
    assert rolled_away_from(past[0], target) == 3


def test_after_a_failed_deploy_the_running_rc_is_deployed_again() -> None:
    past = history((1, S.SUCCESS), (2, S.SUCCESS), (3, S.FAILURE))
    assert target_search(past[0]) == TargetSearch(excluded_candidate_id=None)
    target = rollback_target(past)
    assert rc_of(target) == 2
    assert target is not None
    assert rolled_away_from(past[0], target) == 3


def test_rolling_back_twice_goes_back_two_versions_never_forward() -> None:
    past = history((1, S.SUCCESS), (2, S.SUCCESS), (3, S.SUCCESS))
    past = roll_back(past)
    past[0].status = S.SUCCESS  # the rollback to rc2 succeeded
    past = roll_back(past)
    assert past[0].release_candidate_id == 1
    past[0].status = S.SUCCESS
    # rc2 and rc3 were rolled away from: nothing is left to go back to.
    assert rollback_target(past) is None
    with pytest.raises(DomainError) as caught:
        roll_back(past)
    assert caught.value.message == errors.NOTHING_TO_ROLL_BACK_TO


def test_a_double_click_deploys_the_first_rollbacks_target_again() -> None:
    past = history((1, S.SUCCESS), (2, S.SUCCESS), (3, S.SUCCESS))
    past = roll_back(past)  # to rc2, still pending
    past = roll_back(past)  # clicked again before it ended
    assert [d.release_candidate_id for d in past[:2]] == [2, 2]
    # The second rollback went away from nothing: rc2 may still be rolled back to later.
    assert rolled_away_from(past[1], past[0]) is None
    assert [d.rolled_back_at is not None for d in past[2:]] == [True, False, False]


def test_a_rollback_target_must_have_succeeded_and_not_been_rolled_away_from() -> None:
    past = history((1, S.SUCCESS), (2, S.CANCELED), (3, S.SUCCESS))
    target = rollback_target(past)
    assert rc_of(target) == 1
    past[-1].rolled_back_at = T0
    assert rollback_target(past) is None
    assert rollback_target([]) is None


def test_only_the_successes_not_yet_rolled_back_are_remembered() -> None:
    marked = D(1, 5, S.SUCCESS, rolled_back_at=T0)
    deployments = [D(4, 5, S.SUCCESS), D(3, 5, S.FAILURE), marked]
    assert to_remember(deployments) == [deployments[0]]


def test_nothing_deployed_means_nothing_to_roll_back_from() -> None:
    with pytest.raises(DomainError) as caught:
        ensure_may_roll_back(Env(), None, T0, force=False)
    assert caught.value.message == errors.NOTHING_TO_ROLL_BACK_TO


def test_a_frozen_environment_is_rolled_back_only_with_force() -> None:
    newest = D(1, 1, S.SUCCESS)
    frozen = Env(frozen_at=T0)
    with pytest.raises(DomainError) as caught:
        ensure_may_roll_back(frozen, newest, T0, force=False)
    assert caught.value.message == errors.ENVIRONMENT_FROZEN
    assert ensure_may_roll_back(frozen, newest, T0, force=True) is newest


def test_a_removed_environment_is_not_rolled_back_even_with_force() -> None:
    with pytest.raises(DomainError) as caught:
        ensure_may_roll_back(Env(removed_at=T0), D(1, 1, S.SUCCESS), T0, force=True)
    assert caught.value.message == errors.ENVIRONMENT_REMOVED
