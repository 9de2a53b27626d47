"""The freeze rule over plain values: state at a time, refusals, freezing and unfreezing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.core import errors
from bot.core.errors import DomainError
from bot.domain.freeze import (
    Freeze,
    current_freeze,
    ensure_not_frozen,
    freeze_after,
    freeze_environment,
    unfreeze_environment,
)
from tests.domain_values import Env

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_a_freeze_holds_until_its_end() -> None:
    env = Env(frozen_at=T0, frozen_by="ops", frozen_reason="release", frozen_until=T0 + HOUR)
    assert current_freeze(env, T0 + HOUR / 2) == Freeze("release", "ops", T0, T0 + HOUR)
    assert current_freeze(env, T0 + HOUR) is None
    assert current_freeze(Env(), T0) is None


def test_a_frozen_environment_refuses_unless_forced() -> None:
    env = Env(frozen_at=T0)
    with pytest.raises(DomainError) as caught:
        ensure_not_frozen(env, T0)
    assert caught.value.message == errors.ENVIRONMENT_FROZEN
    ensure_not_frozen(env, T0, force=True)
    ensure_not_frozen(Env(), T0)


def test_refreezing_keeps_since_and_takes_the_new_reason() -> None:
    env = Env()
    freeze_environment(env, reason="a", by="ops", until=None, now=T0)
    freeze_environment(env, reason="b", by="dev", until=None, now=T0 + HOUR)
    assert env == Env(frozen_at=T0, frozen_by="dev", frozen_reason="b")


def test_a_lapsed_freeze_frozen_again_starts_anew() -> None:
    env = Env(frozen_at=T0, frozen_until=T0 + HOUR)
    later = T0 + 2 * HOUR
    assert freeze_after(env, reason=None, by=None, until=None, now=later).since == later


def test_the_end_is_stored_in_utc_and_must_be_in_the_future() -> None:
    plus_two = timezone(timedelta(hours=2))
    until = (T0 + HOUR).astimezone(plus_two)
    frozen = freeze_after(Env(), reason=None, by=None, until=until, now=T0)
    assert frozen.until == until
    assert frozen.until is not None
    assert frozen.until.tzinfo == UTC
    with pytest.raises(DomainError) as caught:
        freeze_after(Env(), reason=None, by=None, until=T0, now=T0)
    assert caught.value.message == errors.FREEZE_UNTIL_IN_PAST


def test_unfreezing_clears_the_freeze() -> None:
    env = Env(frozen_at=T0, frozen_by="ops", frozen_reason="r", frozen_until=T0 + HOUR)
    unfreeze_environment(env)
    assert env == Env()
