"""An environment's release policy in words, as the dashboard shows it: what it requires
first, who approves, its calendar windows, and the freeze in effect or the next one.

The words read the same values the rules decide on (bot/domain/policy.py), so what the page
says is what a deploy meets: "frozen until" is `calendar_freeze`'s end, in the window's time
zone, as the refusal words it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.domain.approvals import ApprovalRule
from bot.domain.calendar import LOCAL_FORMAT, Span, Window
from bot.domain.policy import EnvironmentPolicy, calendar_freeze, upcoming_window

DAYS = {
    "MO": "Monday",
    "TU": "Tuesday",
    "WE": "Wednesday",
    "TH": "Thursday",
    "FR": "Friday",
    "SA": "Saturday",
    "SU": "Sunday",
}
# The parts of a rule said in words; a rule with any other part is shown as written.
WORDED_PARTS = frozenset({"FREQ", "BYDAY", "BYHOUR", "BYMINUTE", "INTERVAL"})


@dataclass(frozen=True)
class PolicyWords:
    requires: str | None  # "after staging, soaked there 60 minutes"
    approvals: str | None  # "2 from @acme/release-managers, maintain; …"
    windows: tuple[str, ...]  # each calendar window
    frozen: str | None  # the calendar freeze in effect: "frozen until … (window …)"
    next_window: str | None  # the next window to open

    @property
    def anything(self) -> bool:
        return bool(self.requires or self.approvals or self.windows)


def policy_in_words(policy: EnvironmentPolicy, now: datetime) -> PolicyWords:
    in_effect = calendar_freeze(policy, now)
    upcoming = upcoming_window(policy, now)
    return PolicyWords(
        requires=requires_words(policy),
        approvals=approvals_words(policy.approvals),
        windows=tuple(window_words(w) for w in policy.windows),
        frozen=freeze_words(in_effect) if in_effect is not None else None,
        next_window=next_window_words(upcoming) if upcoming is not None else None,
    )


def requires_words(policy: EnvironmentPolicy) -> str | None:
    """`after staging, soaked there 60 minutes`; None without `requires`."""
    if not policy.requires:
        return None
    names = _listing(list(policy.requires), "and")
    if policy.soak <= timedelta(0):
        return f"after {names}"
    where = "there" if len(policy.requires) == 1 else "in each"
    return f"after {names}, soaked {where} {span_words(policy.soak)}"


def approvals_words(rule: ApprovalRule | None) -> str | None:
    """`2 from @acme/release-managers, maintain, never the one who asked; each counts 24
    hours`; None without `approvals`."""
    if rule is None:
        return None
    who = ", ".join(rule.approvers) if rule.approvers else "anyone who may deploy here"
    return (
        f"{rule.required} from {who}, never the one who asked; each counts "
        f"{span_words(rule.expire)}"
    )


def window_words(window: Window) -> str:
    """`weekend: every Friday at 17:00 for 64 hours (America/New_York): No deploys over the
    weekend`, or a one-off window's `from … until …`."""
    if window.rule is not None and window.duration is not None:
        when = f"{rule_words(window.rule)} for {span_words(window.duration)}"
    elif window.start is not None and window.end is not None:
        when = (
            f"from {window.start.strftime(LOCAL_FORMAT)} until {window.end.strftime(LOCAL_FORMAT)}"
        )
    else:
        when = "never"
    return f"{window.name}: {when} ({window.timezone}): {window.reason}"


def freeze_words(span: Span) -> str:
    """`frozen until Monday 2026-03-09 09:00 EDT (America/New_York) (window weekend: No
    deploys over the weekend)`."""
    return f"frozen until {span.local_end()} (window {span.window.name}: {span.window.reason})"


def next_window_words(span: Span) -> str:
    return f"{span.window.name}, {span.local_start()} until {span.local_end()}"


def rule_words(rule: str) -> str:
    """A window's RRULE as a person says it (`every Friday at 17:00`, `every day at 18:30`);
    one with parts beyond a day, an hour and a minute as written (`by the rule …`)."""
    parts = _parts(rule)
    as_written = f"by the rule {rule}"
    if parts is None or not set(parts) <= WORDED_PARTS or parts.get("INTERVAL", "1") != "1":
        return as_written
    at = _time_of_day(parts.get("BYHOUR", "0"), parts.get("BYMINUTE", "0"))
    days = [DAYS.get(day) for day in parts.get("BYDAY", "").split(",") if day]
    if at is None or None in days:
        return as_written
    frequency = parts.get("FREQ")
    if frequency == "DAILY" and not days:
        return f"every day at {at}"
    if frequency in ("DAILY", "WEEKLY") and days:
        return f"every {_listing([d for d in days if d], 'and')} at {at}"
    return as_written


def span_words(span: timedelta) -> str:
    """`90 minutes`, `64 hours`, `2 hours 30 minutes`."""
    minutes = int(span.total_seconds() // 60)
    if minutes < 120:
        return _count(minutes, "minute")
    hours, rest = divmod(minutes, 60)
    if not rest:
        return _count(hours, "hour")
    return f"{_count(hours, 'hour')} {_count(rest, 'minute')}"


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"


def _parts(rule: str) -> dict[str, str] | None:
    parts = {}
    for part in rule.upper().split(";"):
        key, sep, value = part.strip().partition("=")
        if not sep:
            return None
        parts[key.strip()] = value.strip()
    return parts


def _time_of_day(hour: str, minute: str) -> str | None:
    if not (hour.isdigit() and minute.isdigit()):
        return None  # several hours or minutes: said as written
    return f"{int(hour):02d}:{int(minute):02d}"


def _listing(items: list[str], last: str) -> str:
    if len(items) < 2:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"
