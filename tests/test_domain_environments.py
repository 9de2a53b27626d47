"""Which environments take deployments, and where auto-deploy sends a ready RC: no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core import errors
from bot.core.errors import DomainError
from bot.domain.environments import (
    auto_deploy_targets,
    ensure_accepts_deployments,
    takes_auto_deploy,
)
from bot.domain.names import is_valid_name
from tests.domain_values import Env

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_removed_environment_takes_no_deployment() -> None:
    ensure_accepts_deployments(Env())
    with pytest.raises(DomainError) as caught:
        ensure_accepts_deployments(Env(removed_at=T0))
    assert caught.value.message == errors.ENVIRONMENT_REMOVED


@pytest.mark.parametrize(
    "environment",
    [
        Env(auto_deploy=False),
        Env(removed_at=T0),
        Env(auto_deploy_paused_at=T0),
    ],
    ids=["not asked", "removed", "paused by a rollback"],
)
def test_auto_deploy_skips(environment: Env) -> None:
    assert not takes_auto_deploy(environment)


def test_auto_deploy_goes_to_every_environment_that_takes_it_in_order() -> None:
    # A frozen one is a target: the release policy refuses it, and that refusal is told
    # (tests/test_notifications.py).
    frozen = Env("qa", frozen_at=T0 - timedelta(hours=2))
    environments = [Env("staging"), Env("production", auto_deploy=False), frozen, Env("demo")]
    assert [e.name for e in auto_deploy_targets(environments)] == ["staging", "qa", "demo"]


@pytest.mark.parametrize(
    ("name", "valid"),
    [("production", True), ("eu west", False), ("a/b", False), ("", False), ("x" * 101, False)],
)
def test_names_are_what_a_url_path_can_hold(name: str, valid: bool) -> None:
    assert is_valid_name(name) is valid
