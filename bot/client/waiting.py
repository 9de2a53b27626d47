"""`--wait`: follow a deployment until it ends, telling each change as it is seen.

The deployment is asked for every `interval` seconds (`GET …/deployments/<id>`); a change of
its status (or of what its run waits for) is told once. It ends at a final status, or when
`timeout` seconds have gone by with it still under way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.client import endpoints
from bot.client.http import Sleep, TarmacHttp
from bot.domain.statuses import FINAL_STATUSES, DeploymentStatus

JsonObject = dict[str, Any]


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


def outcome_of(deployment: JsonObject) -> Outcome | None:
    """What a deployment's status means to a waiting command: None while it is under way
    (pending, in_progress, canceling, unknown); succeeded only for success; failed for
    failure, error and canceled (superseded, canceled, rolled back)."""
    status = deployment["status"]
    if status not in FINAL_STATUSES:
        return None
    return Outcome.SUCCEEDED if status == DeploymentStatus.SUCCESS else Outcome.FAILED


def is_news(seen: JsonObject, now: JsonObject) -> bool:
    """Whether `now` is worth a line after `seen`: its status or its wait changed."""
    return (seen["status"], seen.get("waiting_for")) != (now["status"], now.get("waiting_for"))


@dataclass(frozen=True)
class Waited:
    outcome: Outcome
    deployment: JsonObject


@dataclass(frozen=True)
class Follow:
    http: TarmacHttp
    project: str
    environment: str
    interval: float
    timeout: float | None
    sleep: Sleep
    clock: Callable[[], float] = time.monotonic


async def follow(how: Follow, first: JsonObject, tell: Callable[[JsonObject], None]) -> Waited:
    """`first` (as the deploy answered it) told, then each change until the end."""
    tell(first)
    seen = first
    give_up_at = None if how.timeout is None else how.clock() + how.timeout
    while (outcome := outcome_of(seen)) is None:
        if give_up_at is not None and how.clock() >= give_up_at:
            return Waited(Outcome.TIMED_OUT, seen)
        pause = how.interval if give_up_at is None else min(how.interval, give_up_at - how.clock())
        await how.sleep(max(pause, 0.0))
        now = await endpoints.deployment(how.http, how.project, how.environment, int(seen["id"]))
        if is_news(seen, now):
            tell(now)
        seen = now
    return Waited(outcome, seen)
