"""Calendar freezes: windows in an environment's policy during which it takes no deploy.

A window is recurring (an RFC 5545 RRULE whose occurrences are the window's starts, and a
duration) or one-off (from, until), always in wall-clock time of an IANA time zone. A
recurring window's end is its start plus the duration on the wall clock, so "Friday 17:00 for
64h" ends Monday 09:00 local on the weekends daylight saving time begins or ends too (64 hours
of wall-clock time are 63 or 65 elapsed hours then). A wall-clock time that does not exist
(the hour skipped in spring) is read with the offset before the change, one that happens
twice (the hour repeated in autumn) as its first occurrence.

Windows that overlap or touch make one freeze, until the last of them ends.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

# Where a rule's occurrences are counted from (its DTSTART), in the window's wall-clock time:
# a rule's BYHOUR and BYMINUTE give the time of day, 00:00 when left out.
RULES_START = datetime(2020, 1, 1)
MAX_DURATION = timedelta(days=366)
# How far the search for the next window looks ahead, and how many touching windows make one
# freeze at most (a rule that freezes every day for 24 hours would chain without end).
LOOKAHEAD = timedelta(days=400)
MAX_CHAINED = 64
LOCAL_FORMAT = "%Y-%m-%d %H:%M"
# How old an environment's calendar watermark may grow while no window opens or closes.
WATERMARK_REFRESH = timedelta(hours=1)
SLOW_FREQUENCIES = frozenset({"DAILY", "WEEKLY", "MONTHLY", "YEARLY"})

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")


def parse_duration(text: str) -> timedelta | None:
    """`64h`, `2d16h`, `90m` (at least a minute, at most MAX_DURATION); None when it is not
    one."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or not any(match.groups()):
        return None
    days, hours, minutes = (int(part or 0) for part in match.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes)
    if not timedelta(minutes=1) <= duration <= MAX_DURATION:
        return None
    return duration


@dataclass(frozen=True)
class Window:
    """One calendar freeze of the projects file, as stored (bot/config/policy.py)."""

    name: str
    reason: str
    timezone: str
    rule: str | None = None
    duration: timedelta | None = None
    start: datetime | None = None  # one-off, wall clock
    end: datetime | None = None

    @classmethod
    def from_stored(cls, stored: Mapping[str, Any]) -> Window:
        duration = stored.get("duration")
        return cls(
            name=str(stored["name"]),
            reason=str(stored["reason"]),
            timezone=str(stored.get("timezone") or "UTC"),
            rule=stored.get("rrule"),
            duration=parse_duration(duration) if duration else None,
            start=_local(stored.get("from")),
            end=_local(stored.get("until")),
        )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Span:
    """A window's one occurrence, in UTC (`end` exclusive); `until` is when the freeze it
    belongs to ends, which is later when windows touch."""

    window: Window
    start: datetime
    end: datetime

    def local_end(self) -> str:
        return describe_local(self.end, self.window.zone)

    def local_start(self) -> str:
        return describe_local(self.start, self.window.zone)


def describe_local(moment: datetime, zone: ZoneInfo) -> str:
    """`Monday 2026-03-09 09:00 EDT (America/New_York)`: what a person reads in a refusal."""
    local = moment.astimezone(zone)
    return f"{local.strftime('%A')} {local.strftime(LOCAL_FORMAT)} {local.tzname()} ({zone.key})"


def spans_overlapping(window: Window, start: datetime, end: datetime) -> Iterator[Span]:
    """The window's occurrences that overlap [start, end), oldest first."""
    zone = window.zone
    if window.rule is None or window.duration is None:
        if window.start is not None and window.end is not None:
            span = Span(window, _utc(window.start, zone), _utc(window.end, zone))
            if span.start < end and span.end > start:
                yield span
        return
    # Wall-clock bounds with a day's margin for the offsets; each start is checked in UTC.
    low = start.astimezone(zone).replace(tzinfo=None) - window.duration - timedelta(days=1)
    high = end.astimezone(zone).replace(tzinfo=None) + timedelta(days=1)
    for local_start in _occurrences(window.rule).between(low, high):
        span = Span(window, _utc(local_start, zone), _utc(local_start + window.duration, zone))
        if span.start < end and span.end > start:
            yield span


def freeze_at(windows: Sequence[Window], now: datetime) -> Span | None:
    """The calendar freeze in effect at `now`: the window covering it, its `end` moved to
    the end of every window that overlaps or touches it; None when no window covers `now`."""
    covering = [
        s
        for w in windows
        for s in spans_overlapping(w, now, now + timedelta(seconds=1))
        if s.start <= now
    ]
    if not covering:
        return None
    freeze = max(covering, key=lambda s: s.end)
    for _ in range(MAX_CHAINED):
        following = [
            s
            for w in windows
            for s in spans_overlapping(w, freeze.end, freeze.end + timedelta(seconds=1))
            if s.start <= freeze.end < s.end
        ]
        if not following:
            break
        freeze = Span(freeze.window, freeze.start, max(s.end for s in following))
    return freeze


def next_window(windows: Sequence[Window], now: datetime) -> Span | None:
    """The next window to begin after `now` (looking LOOKAHEAD ahead), or None."""
    upcoming = [
        s for w in windows for s in spans_overlapping(w, now, now + LOOKAHEAD) if s.start > now
    ]
    return min(upcoming, key=lambda s: s.start, default=None)


def edges_between(windows: Iterable[Window], start: datetime, end: datetime) -> list[Edge]:
    """Every window opening or closing in (start, end], in time order (a closing before an
    opening at the same moment): what the notifications announce. An occurrence that starts
    in the hour skipped in spring and lasts less than that hour is empty, and says nothing."""
    found: list[Edge] = []
    for window in windows:
        for span in spans_overlapping(window, start, end + timedelta(seconds=1)):
            if span.end <= span.start:
                continue
            if start < span.start <= end:
                found.append(Edge(span, opening=True, at=span.start))
            if start < span.end <= end:
                found.append(Edge(span, opening=False, at=span.end))
    return sorted(found, key=lambda e: (e.at, e.opening))


@dataclass(frozen=True)
class Edge:
    span: Span
    opening: bool
    at: datetime


@dataclass(frozen=True)
class Look:
    """What one look at an environment's windows tells (`edges`), and where its watermark
    goes (`checked_at`; None clears it)."""

    edges: list[Edge]
    checked_at: datetime | None


def edges_to_tell(
    windows: Sequence[Window], checked_at: datetime | None, now: datetime
) -> Look | None:
    """The windows' edges since the environment's watermark `checked_at`, up to `now`;
    None when there is nothing to write. Each edge is in exactly one look, as the watermark
    only moves forward (a clock behind it finds nothing). The first look starts the watermark
    at `now`, telling no backlog of older edges; an environment without windows has its
    watermark cleared, so windows added to it later start afresh too. A look that finds no
    edge moves the watermark only once it is WATERMARK_REFRESH old (the next look searches
    from there), so an environment with windows costs no write every sweep."""
    if not windows:
        return None if checked_at is None else Look([], None)
    if checked_at is None:
        return Look([], now)
    if now <= checked_at:
        return None
    edges = edges_between(windows, checked_at, now)
    if not edges and now - checked_at < WATERMARK_REFRESH:
        return None
    return Look(edges, now)


def windows_from_stored(stored: Sequence[Mapping[str, Any]]) -> tuple[Window, ...]:
    return tuple(Window.from_stored(entry) for entry in stored)


class _Occurrences:
    """A rule's starts, computed once a process as far as they were asked for and kept in
    order: finding those near a moment is a binary search, not a walk from RULES_START."""

    def __init__(self, rule: rrule) -> None:
        self._upcoming = iter(rule)
        self._starts: list[datetime] = []
        self._exhausted = False

    def between(self, low: datetime, high: datetime) -> list[datetime]:
        """The starts in [low, high]."""
        while not self._exhausted and (not self._starts or self._starts[-1] <= high):
            following = next(self._upcoming, None)
            if following is None:
                self._exhausted = True
            else:
                self._starts.append(following)
        return self._starts[
            bisect.bisect_left(self._starts, low) : bisect.bisect_right(self._starts, high)
        ]


@functools.lru_cache(maxsize=512)
def _occurrences(text: str) -> _Occurrences:
    return _Occurrences(_rule(text))


def _rule(text: str) -> rrule:
    parsed = rrulestr(text, dtstart=RULES_START)
    assert isinstance(parsed, rrule)
    return parsed


def rule_is_daily_or_slower(text: str) -> bool:
    """Freezes recur at most daily: a finer rule would only say the same more expensively."""
    found = re.search(r"(?:^|;)\s*FREQ\s*=\s*([A-Z]+)", text.upper())
    return found is not None and found.group(1) in SLOW_FREQUENCIES


def _utc(local: datetime, zone: ZoneInfo) -> datetime:
    return local.replace(tzinfo=zone).astimezone(UTC)


def _local(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    return datetime.strptime(text, LOCAL_FORMAT)
