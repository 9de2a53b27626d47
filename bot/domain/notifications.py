"""Which transition is which notification event, and which receivers hear of it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from bot.domain.statuses import DeploymentKind, DeploymentStatus

DEPLOYMENT_STARTED = "deployment.started"
DEPLOYMENT_SUCCEEDED = "deployment.succeeded"
DEPLOYMENT_FAILED = "deployment.failed"
DEPLOYMENT_CANCELED = "deployment.canceled"
DEPLOYMENT_REFUSED = "deployment.refused"
ROLLBACK_STARTED = "rollback.started"
ENVIRONMENT_FROZEN = "environment.frozen"
ENVIRONMENT_UNFROZEN = "environment.unfrozen"
FREEZE_WINDOW_OPENED = "freeze_window.opened"
FREEZE_WINDOW_CLOSED = "freeze_window.closed"
CANDIDATE_BUILT = "candidate.built"
CANDIDATE_BUILD_FAILED = "candidate.build_failed"

_ENDED = {
    DeploymentStatus.SUCCESS: DEPLOYMENT_SUCCEEDED,
    DeploymentStatus.FAILURE: DEPLOYMENT_FAILED,
    DeploymentStatus.ERROR: DEPLOYMENT_FAILED,
    DeploymentStatus.CANCELED: DEPLOYMENT_CANCELED,
}


def recorded_event(kind: str) -> str:
    """A deployment just recorded: a rollback says so; a deploy or a reported deploy started.
    A rollback's end is a deployment event like any other (its `kind` tells)."""
    return ROLLBACK_STARTED if kind == DeploymentKind.ROLLBACK else DEPLOYMENT_STARTED


def status_event(status: str) -> str | None:
    """The event of a deployment reaching `status`: only an end is one (pending, in_progress
    and canceling are steps on the way, not news)."""
    return _ENDED.get(DeploymentStatus(status))


def freeze_event(*, was_frozen: bool, frozen: bool) -> str | None:
    """A freeze or unfreeze is an event only when it changes whether the environment is
    frozen: a new reason for a freeze in effect, or unfreezing what was not frozen, is not."""
    if frozen and not was_frozen:
        return ENVIRONMENT_FROZEN
    if was_frozen and not frozen:
        return ENVIRONMENT_UNFROZEN
    return None


def window_event(opening: bool) -> str:
    """A calendar window opening or closing (bot/domain/calendar.py `edges_between`)."""
    return FREEZE_WINDOW_OPENED if opening else FREEZE_WINDOW_CLOSED


def build_event(ready: bool) -> str:
    return CANDIDATE_BUILT if ready else CANDIDATE_BUILD_FAILED


def hears(events: Sequence[str] | None, event: str) -> bool:
    """Whether a receiver listening for `events` (None: all of them) hears of `event`."""
    return events is None or event in events


def receivers_of(receivers: Iterable[dict[str, object]], event: str) -> list[dict[str, object]]:
    """The receivers (as the projects file stored them) that hear of `event`, in file order."""
    found = []
    for receiver in receivers:
        events = receiver.get("events")
        if hears(events if isinstance(events, list) else None, event):
            found.append(receiver)
    return found
