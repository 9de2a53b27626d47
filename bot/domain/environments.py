"""Which environments take deployments: by hand, and automatically when an RC is ready."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol, TypeVar

from bot.core import errors
from bot.domain.freeze import FreezeFacts, current_freeze


class Removable(Protocol):
    @property
    def removed_at(self) -> datetime | None: ...


class AutoDeployFacts(FreezeFacts, Removable, Protocol):
    @property
    def auto_deploy(self) -> bool: ...

    @property
    def auto_deploy_paused_at(self) -> datetime | None: ...


E = TypeVar("E", bound=AutoDeployFacts)


def ensure_accepts_deployments(environment: Removable) -> None:
    """An environment that left the projects file keeps its history and takes nothing new."""
    if environment.removed_at is not None:
        raise errors.invalid(errors.ENVIRONMENT_REMOVED)


def takes_auto_deploy(environment: AutoDeployFacts, now: datetime) -> bool:
    """Whether a ready RC is deployed to `environment` on its own: when it asks for it, unless
    it is removed, paused by a rollback since, or frozen."""
    return _wants_auto_deploy(environment) and current_freeze(environment, now) is None


def _wants_auto_deploy(environment: AutoDeployFacts) -> bool:
    return (
        environment.auto_deploy
        and environment.removed_at is None
        and environment.auto_deploy_paused_at is None
    )


def auto_deploy_frozen_out(environments: Iterable[E], now: datetime) -> list[E]:
    """The environments a ready RC would go to on its own but for their freeze: a deploy
    refused for a freeze (notifications tell of it)."""
    return [
        environment
        for environment in environments
        if _wants_auto_deploy(environment) and current_freeze(environment, now) is not None
    ]


def auto_deploy_targets(environments: Iterable[E], now: datetime) -> list[E]:
    """The environments a ready RC goes to, in the order given."""
    return [environment for environment in environments if takes_auto_deploy(environment, now)]
