"""The release policy keys of an environment in the projects file: promotion order and soak,
calendar freezes, approvals. Validated here; decided on by bot/domain/policy.py, which reads
what `stored` keeps in the database."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from bot.domain.calendar import RULES_START, parse_duration, rule_is_daily_or_slower
from bot.domain.names import NAME_PATTERN

MAX_SOAK_MINUTES = 30 * 24 * 60
MAX_APPROVALS = 10
DEFAULT_APPROVAL_EXPIRY_MINUTES = 24 * 60
# Who may approve: a repository role (and every role above it), or a team as `@org/team-slug`.
APPROVER_ROLES = ("write", "maintain", "admin")
TEAM_PATTERN = r"^@[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$"
LOCAL_TIME_FORMAT = "%Y-%m-%d %H:%M"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"'{value}' is not an IANA time zone (such as Europe/Berlin or America/New_York)"
        ) from None
    return value


def _local_time_as_text(value: object) -> object:
    """YAML reads an unquoted `2026-12-24 18:00` as a timestamp; it is a wall-clock time in
    the window's time zone, so it is kept as text."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            raise ValueError("a wall-clock time without an offset: the window's timezone applies")
        return value.strftime(LOCAL_TIME_FORMAT)
    return value


def _local_time(value: str) -> str:
    try:
        datetime.strptime(value, LOCAL_TIME_FORMAT)
    except ValueError:
        raise ValueError("must be a wall-clock time 'YYYY-MM-DD HH:MM'") from None
    return value


def _rrule(value: str) -> str:
    text = value.strip()
    if text.upper().startswith(("DTSTART", "RRULE:")) or "\n" in text:
        raise ValueError("one RRULE's parts, such as FREQ=WEEKLY;BYDAY=FR;BYHOUR=17")
    try:
        rrulestr(text, dtstart=RULES_START)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"is not an RFC 5545 RRULE: {exc}") from None
    if not rule_is_daily_or_slower(text):
        raise ValueError("a freeze recurs at most daily (FREQ=DAILY, WEEKLY, MONTHLY or YEARLY)")
    return text


def _duration(value: str) -> str:
    if parse_duration(value) is None:
        raise ValueError("must be a duration such as 64h, 2d16h or 90m (at most 366d)")
    return value


TimeZone = Annotated[str, AfterValidator(_time_zone)]
LocalTime = Annotated[str, BeforeValidator(_local_time_as_text), AfterValidator(_local_time)]
Rule = Annotated[str, AfterValidator(_rrule)]
Duration = Annotated[str, AfterValidator(_duration)]


class FreezeWindowConfig(_Strict):
    """A calendar freeze: recurring (`rrule` and `duration`) or one-off (`from` and `until`),
    in wall-clock time of `timezone`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    timezone: TimeZone = "UTC"
    rrule: Rule | None = None
    duration: Duration | None = None
    from_: LocalTime | None = Field(default=None, alias="from")
    until: LocalTime | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> FreezeWindowConfig:
        recurring = self.rrule is not None or self.duration is not None
        one_off = self.from_ is not None or self.until is not None
        if recurring == one_off:
            raise ValueError("needs either rrule and duration, or from and until")
        if recurring and (self.rrule is None or self.duration is None):
            raise ValueError("a recurring window needs both rrule and duration")
        if one_off:
            if self.from_ is None or self.until is None:
                raise ValueError("a one-off window needs both from and until")
            if self.until <= self.from_:
                raise ValueError("until must be after from")
        return self

    def stored(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reason": self.reason,
            "timezone": self.timezone,
            "rrule": self.rrule,
            "duration": self.duration,
            "from": self.from_,
            "until": self.until,
        }


def _approver(value: str) -> str:
    if value in APPROVER_ROLES or re.fullmatch(TEAM_PATTERN, value):
        return value
    raise ValueError(
        f"'{value}' is neither a role ({', '.join(APPROVER_ROLES)}) nor a team as @org/team-slug"
    )


class ApprovalsConfig(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)

    required: Annotated[int, Field(ge=1, le=MAX_APPROVALS)]
    # Empty: anyone who may deploy to the environment may approve (never their own deploy).
    from_: list[Annotated[str, AfterValidator(_approver)]] = Field(
        default_factory=list, alias="from", max_length=20
    )
    expire_minutes: Annotated[int, Field(ge=1, le=MAX_SOAK_MINUTES)] = (
        DEFAULT_APPROVAL_EXPIRY_MINUTES
    )

    def stored(self) -> dict[str, Any]:
        return {
            "required": self.required,
            "from": list(self.from_),
            "expire_minutes": self.expire_minutes,
        }
