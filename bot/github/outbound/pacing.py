"""Pacing the calls that create content on GitHub (comments, note edits, releases).

GitHub's secondary rate limits allow "no more than 80 content-generating requests per minute
and no more than 500 content-generating requests per hour", and its best practices ask for
requests made serially, with "at least one second between each" POST, PATCH, PUT or DELETE
(docs/github-app.md, "Content creation is paced"). The outbox worker delivers up to 100 items
at once, so the items of the actions registered `paced` take turns here: one at a time, each
starting at least `interval` after the previous one ended, and no more than the per-minute
and per-hour counts started in the windows before. An item whose turn has not come is put
back, due when it is expected to come, without holding a worker slot.

The scope is one process: replicas sharing a database each pace their own calls, so N of
them may together reach N times the rate.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MIN_INTERVAL = 1.0
PER_MINUTE = 80
PER_HOUR = 500
MINUTE = 60.0
HOUR = 3600.0


@dataclass(frozen=True)
class Limits:
    interval: float = MIN_INTERVAL  # seconds from the end of one paced call to the next
    per_minute: int = PER_MINUTE
    per_hour: int = PER_HOUR


def seconds_until_turn(
    *, now: float, busy: bool, last_end: float | None, starts: Sequence[float], limits: Limits
) -> float:
    """How long the next paced call must wait (0: it may start now). `starts`: the start
    times of the calls in the last hour, oldest first. A call under way makes the next wait
    at least one interval (its end is not known yet)."""
    if busy:
        return limits.interval
    waits = [0.0]
    if last_end is not None:
        waits.append(last_end + limits.interval - now)
    in_minute = [start for start in starts if start > now - MINUTE]
    if len(in_minute) >= limits.per_minute:
        waits.append(in_minute[-limits.per_minute] + MINUTE - now)
    in_hour = [start for start in starts if start > now - HOUR]
    if len(in_hour) >= limits.per_hour:
        waits.append(in_hour[-limits.per_hour] + HOUR - now)
    return max(waits)


class ContentPacer:
    """The turn of this process's paced calls (see the module's docstring)."""

    def __init__(
        self, limits: Limits = Limits(), *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits
        self._monotonic = monotonic
        self._busy = False
        self._last_end: float | None = None
        self._starts: deque[float] = deque()

    def wait(self) -> float:
        """Seconds until a paced call may start (0: now)."""
        now = self._monotonic()
        while self._starts and self._starts[0] <= now - HOUR:
            self._starts.popleft()
        return seconds_until_turn(
            now=now,
            busy=self._busy,
            last_end=self._last_end,
            starts=self._starts,
            limits=self.limits,
        )

    def start(self) -> bool:
        """Take the turn if it has come; False when it has not (nothing was taken)."""
        if self._busy or self.wait() > 0:
            return False
        self._busy = True
        self._starts.append(self._monotonic())
        return True

    def finish(self) -> None:
        """The paced call's item is done with GitHub (whatever its outcome)."""
        self._busy = False
        self._last_end = self._monotonic()

    def schedule(self, count: int) -> list[float]:
        """When each of `count` items put back now may expect its turn, in seconds from now:
        one interval apart after the current wait, so they come back one by one instead of
        all together."""
        first = self.wait()  # a call under way: one interval
        return [first + index * self.limits.interval for index in range(count)]
