"""Every outbox action's handler: importing the effect modules registers them (`@effect`,
`@on_refusal` and `@preload` in effects.py), so the registry itself imports none of them."""

from __future__ import annotations

from bot.github.outbound import (
    builds,
    change_reports,
    comments,
    deployments,
    protection_rule,
    pull_requests,
    releases,
    shipped,
)
from bot.github.outbound.effects import HANDLERS, Handler
from bot.storage.outbox import Action

EFFECT_MODULES = (
    builds,
    change_reports,
    comments,
    deployments,
    protection_rule,
    pull_requests,
    releases,
    shipped,
)


def load_all() -> dict[Action, Handler]:
    """Every action's handler, by action."""
    return HANDLERS
