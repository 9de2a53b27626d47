"""Which environments take deployments: by hand, and automatically when an RC is ready."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol, TypeVar

from bot.core import errors


class Removable(Protocol):
    @property
    def removed_at(self) -> datetime | None: ...


class AutoDeployFacts(Removable, Protocol):
    @property
    def auto_deploy(self) -> bool: ...

    @property
    def auto_deploy_paused_at(self) -> datetime | None: ...


E = TypeVar("E", bound=AutoDeployFacts)


def ensure_accepts_deployments(environment: Removable) -> None:
    """An environment that left the projects file keeps its history and takes nothing new."""
    if environment.removed_at is not None:
        raise errors.invalid(errors.ENVIRONMENT_REMOVED)


def takes_auto_deploy(environment: AutoDeployFacts) -> bool:
    """Whether a ready RC goes to `environment` on its own: when it asks for it, unless it is
    removed or paused by a rollback since. Whether it may go now (freezes and the rest of the
    release policy) is the policy's to decide (bot/app/policy.py), which tells a refusal."""
    return (
        environment.auto_deploy
        and environment.removed_at is None
        and environment.auto_deploy_paused_at is None
    )


def auto_deploy_targets(environments: Iterable[E]) -> list[E]:
    """The environments a ready RC goes to, in the order given."""
    return [environment for environment in environments if takes_auto_deploy(environment)]
