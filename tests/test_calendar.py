"""Calendar freezes (issue 16 item 2): a Friday 17:00 to Monday 09:00 America/New_York window
refuses on Friday evening "until Monday 09:00" and allows Monday 09:01, on an ordinary weekend
and on those of the March and November 2026 daylight-saving changes; one-off windows; touching
windows chain; `freeze_at` agrees with a brute-force minute scan (Hypothesis).

Through the real app with a test clock: the refusal's text; every policy refusal, through every
door, is audited and told (`deployment.refused`, its reason the refusal's message) to a real
receiver server; a window's opening and closing are each told once, with two services
(replicas) sweeping the same database, SQLite file or PostgreSQL, and after a restart.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from api.keys import SERVICE
from api.schemas import NotificationBody
from bot.app.freeze_windows import sweep_freeze_windows
from bot.domain.calendar import (
    WATERMARK_REFRESH,
    Look,
    Window,
    edges_between,
    edges_to_tell,
    freeze_at,
    spans_overlapping,
)
from bot.domain.policy import calendar_refusal
from bot.github.outbound.worker import OutboxWorker
from bot.service import Service, open_service
from bot.settings import Settings
from bot.storage.db import Database
from bot.storage.models import AuditEvent, Environment
from tests.conftest import SHA_A, Api, TestClock, Webhooks, make_token
from tests.fake_github import FakeGitHub
from tests.test_dashboard_safety import form_fields, sign_in
from tests.test_github_comments import send_comment
from tests.test_github_tags import accepted
from tests.test_github_workflow_runs import run_event, tagged_rc
from tests.test_graphql import gql
from tests.test_notifications import (
    HOOK_SECRET,
    HOOK_VARIABLE,
    SLACK_VARIABLE,
    Receivers,
    check_signatures,
    start_receivers,
)

NY = "America/New_York"
WEEKEND_RULE = "FREQ=WEEKLY;BYDAY=FR;BYHOUR=17;BYMINUTE=0"
WEEKEND_REASON = "No deploys over the weekend"
WEEKEND = Window("weekend", WEEKEND_REASON, NY, rule=WEEKEND_RULE, duration=timedelta(hours=64))
LOCAL = "%Y-%m-%d %H:%M"

# Friday, Monday, Monday's zone abbreviation, and the hours Friday 17:00 to Monday 09:00 lasts.
WEEKENDS = [
    pytest.param("2026-02-13", "2026-02-16", "EST", 64, id="an-ordinary-weekend"),
    pytest.param("2026-03-06", "2026-03-09", "EDT", 63, id="daylight-saving-begins-march-8"),
    pytest.param("2026-10-30", "2026-11-02", "EST", 65, id="daylight-saving-ends-november-1"),
]


def at(local: str, zone: str = NY) -> datetime:
    """A wall-clock time in `zone`, in UTC (a repeated one is its first occurrence)."""
    return datetime.strptime(local, LOCAL).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def weekend_refusal(monday: str, abbreviation: str) -> str:
    return (
        f"Environment is frozen until Monday {monday} 09:00 {abbreviation} (America/New_York) "
        f"by its calendar window 'weekend': {WEEKEND_REASON}; deploy with force and a reason "
        "to override it"
    )


# --- the calendar, without a database ----------------------------------------------------------


@pytest.mark.parametrize(("friday", "monday", "abbreviation", "hours"), WEEKENDS)
def test_a_weekend_window_holds_from_friday_17_to_monday_09_new_york_time(
    friday: str, monday: str, abbreviation: str, hours: int
) -> None:
    frozen = freeze_at([WEEKEND], at(f"{friday} 18:00"))
    assert frozen is not None
    assert (frozen.start, frozen.end) == (at(f"{friday} 17:00"), at(f"{monday} 09:00"))
    assert frozen.end - frozen.start == timedelta(hours=hours)
    assert frozen.local_end() == f"Monday {monday} 09:00 {abbreviation} (America/New_York)"
    assert calendar_refusal(frozen).message == weekend_refusal(monday, abbreviation)
    assert freeze_at([WEEKEND], at(f"{friday} 16:59")) is None
    assert freeze_at([WEEKEND], at(f"{friday} 17:00")) is not None
    assert freeze_at([WEEKEND], at(f"{monday} 08:59")) is not None
    assert freeze_at([WEEKEND], at(f"{monday} 09:00")) is None
    assert freeze_at([WEEKEND], at(f"{monday} 09:01")) is None


def test_a_one_off_window_is_read_on_its_own_wall_clock_across_a_change() -> None:
    easter = Window.from_stored(
        {
            "name": "easter",
            "reason": "Easter weekend",
            "timezone": "Europe/Berlin",
            "from": "2026-03-28 18:00",
            "until": "2026-03-30 08:00",
        }
    )
    frozen = freeze_at([easter], at("2026-03-29 12:00", "Europe/Berlin"))
    assert frozen is not None
    assert frozen.start == datetime(2026, 3, 28, 17, 0, tzinfo=UTC)  # CET, +01:00
    assert frozen.end == datetime(2026, 3, 30, 6, 0, tzinfo=UTC)  # CEST, +02:00
    assert frozen.local_end() == "Monday 2026-03-30 08:00 CEST (Europe/Berlin)"
    assert freeze_at([easter], datetime(2026, 3, 28, 16, 59, 59, tzinfo=UTC)) is None
    assert freeze_at([easter], datetime(2026, 3, 30, 5, 59, 59, tzinfo=UTC)) is not None
    assert freeze_at([easter], datetime(2026, 3, 30, 6, 0, tzinfo=UTC)) is None
    assert freeze_at([easter], datetime(2027, 3, 29, 12, 0, tzinfo=UTC)) is None  # once


def test_wall_clock_times_that_do_not_exist_or_happen_twice_are_read_as_rfc_5545_says() -> None:
    # 02:30 on March 8 does not exist in New York: read with the offset before (EST), 07:30
    # UTC, which is 03:30 EDT. 01:30 on November 1 happens twice: the first (EDT) is meant.
    skipped = Window(
        "skipped", "x", NY, start=datetime(2026, 3, 8, 2, 30), end=datetime(2026, 3, 8, 4)
    )
    repeated = Window(
        "repeated", "x", NY, start=datetime(2026, 11, 1, 1, 30), end=datetime(2026, 11, 1, 3)
    )
    whole_day = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    [spring] = spans_overlapping(skipped, *whole_day)
    [autumn] = spans_overlapping(repeated, *whole_day)
    assert (spring.start, spring.end) == (
        datetime(2026, 3, 8, 7, 30, tzinfo=UTC),
        datetime(2026, 3, 8, 8, 0, tzinfo=UTC),
    )
    assert (autumn.start, autumn.end) == (
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),
        datetime(2026, 11, 1, 8, 0, tzinfo=UTC),
    )
    # A nightly 40 minutes from 02:30 is, that night, 03:30 EDT until 03:10 EDT: nothing; it
    # neither freezes nor is told.
    nightly = Window(
        "nightly",
        "Backups",
        NY,
        rule="FREQ=DAILY;BYHOUR=2;BYMINUTE=30",
        duration=timedelta(minutes=40),
    )
    edges = edges_between([nightly], at("2026-03-07 12:00"), at("2026-03-09 12:00"))
    assert [(e.opening, e.at) for e in edges] == [
        (True, at("2026-03-09 02:30")),
        (False, at("2026-03-09 03:10")),
    ]
    assert freeze_at([nightly], datetime(2026, 3, 8, 7, 20, tzinfo=UTC)) is None


def test_touching_windows_make_one_freeze_until_the_last_of_them_ends() -> None:
    train = Window(
        "release-train",
        "Train leaves",
        NY,
        start=datetime(2026, 3, 9, 9),
        end=datetime(2026, 3, 9, 12),
    )
    lunch = Window(
        "long-lunch", "Lunch", NY, start=datetime(2026, 3, 9, 11), end=datetime(2026, 3, 9, 14)
    )
    frozen = freeze_at([WEEKEND, train, lunch], at("2026-03-07 12:00"))
    assert frozen is not None
    assert frozen.window.name == "weekend"
    assert frozen.end == at("2026-03-09 14:00")
    assert calendar_refusal(frozen).message.startswith(
        "Environment is frozen until Monday 2026-03-09 14:00 EDT (America/New_York) by its "
        "calendar window 'weekend'"
    )
    # A minute apart is not touching.
    apart = Window("apart", "x", NY, start=datetime(2026, 3, 9, 9, 1), end=datetime(2026, 3, 9, 12))
    chained = freeze_at([WEEKEND, apart], at("2026-03-07 12:00"))
    assert chained is not None
    assert chained.end == at("2026-03-09 09:00")
    # Told as they are: the weekend closes and the train opens at the same moment, closing first.
    edges = edges_between([train, WEEKEND], at("2026-03-09 08:00"), at("2026-03-09 10:00"))
    assert [(e.span.window.name, e.opening, e.at) for e in edges] == [
        ("weekend", False, at("2026-03-09 09:00")),
        ("release-train", True, at("2026-03-09 09:00")),
    ]


def test_the_watermark_tells_each_edge_once_and_no_backlog_before_the_first_look() -> None:
    friday = at("2026-03-06 16:00")
    opens = at("2026-03-06 17:00")
    assert edges_to_tell([WEEKEND], None, friday) == Look([], friday)  # last weekend: untold
    assert edges_to_tell([WEEKEND], friday, friday + timedelta(seconds=30)) is None
    opened = edges_to_tell([WEEKEND], friday, opens)
    assert opened is not None
    assert [(e.opening, e.at) for e in opened.edges] == [(True, opens)]
    assert opened.checked_at == opens
    assert edges_to_tell([WEEKEND], opens, opens) is None
    assert edges_to_tell([WEEKEND], opens, opens - timedelta(seconds=5)) is None  # clock behind
    later = opens + WATERMARK_REFRESH
    assert edges_to_tell([WEEKEND], opens, later) == Look([], later)
    assert edges_to_tell([], opens, later) == Look([], None)  # windows gone: watermark cleared
    assert edges_to_tell([], None, later) is None


# --- properties: freeze_at against a brute-force minute scan -----------------------------------

ZONES = (
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",  # a 30-minute change
    "Pacific/Chatham",  # +12:45 / +13:45
    "Asia/Kolkata",  # +05:30, no change
)
WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
MAX_MINUTES = 2 * 24 * 60  # a window's longest duration here
SCAN = timedelta(days=8)  # how far the scan looks: past the longest chain these windows make
PROPERTIES = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@functools.cache
def changes_of(zone: str) -> tuple[datetime, ...]:
    """When `zone`'s offset changes in 2026 and 2027 (to the hour), or a plain moment."""
    tz = ZoneInfo(zone)

    def offset(moment: datetime) -> timedelta | None:
        return moment.astimezone(tz).utcoffset()

    found = []
    day = datetime(2026, 1, 1, tzinfo=UTC)
    while day.year < 2028:
        following = day + timedelta(days=1)
        if offset(day) != offset(following):
            hour = day
            while offset(hour) == offset(day):
                hour += timedelta(hours=1)
            found.append(hour)
        day = following
    return tuple(found) or (datetime(2026, 6, 15, tzinfo=UTC),)


@st.composite
def recurring(draw: st.DrawFn, zone: str) -> tuple[Window, Callable[[date], list[datetime]]]:
    """A rule and, independent of dateutil, the wall-clock starts it has on a date."""
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    duration = timedelta(minutes=draw(st.integers(1, MAX_MINUTES)))
    kind = draw(st.sampled_from(["DAILY", "WEEKLY", "MONTHLY"]))
    if kind == "DAILY":
        rule, days = f"FREQ=DAILY;BYHOUR={hour};BYMINUTE={minute}", None
    elif kind == "WEEKLY":
        days = draw(st.sets(st.integers(0, 6), min_size=1, max_size=3))
        by_day = ",".join(WEEKDAYS[d] for d in sorted(days))
        rule = f"FREQ=WEEKLY;BYDAY={by_day};BYHOUR={hour};BYMINUTE={minute}"
    else:
        day = draw(st.integers(1, 28))
        rule, days = f"FREQ=MONTHLY;BYMONTHDAY={day};BYHOUR={hour};BYMINUTE={minute}", {-day}

    def starts(on: date) -> list[datetime]:
        if days is None or (kind == "WEEKLY" and on.weekday() in days):
            return [datetime(on.year, on.month, on.day, hour, minute)]
        if kind == "MONTHLY" and -on.day in days:
            return [datetime(on.year, on.month, on.day, hour, minute)]
        return []

    return Window("rule", "r", zone, rule=rule, duration=duration), starts


@st.composite
def calendars(draw: st.DrawFn) -> tuple[list[Window], list[tuple[datetime, datetime]], datetime]:
    """Up to three windows in one zone, `now` within days of one of its offset changes, and
    every occurrence near `now` as a UTC interval, computed without bot/domain/calendar.py."""
    zone = draw(st.sampled_from(ZONES))
    tz = ZoneInfo(zone)
    change = draw(st.sampled_from(changes_of(zone)))
    now = change + timedelta(seconds=draw(st.integers(-3 * 86400, 3 * 86400)))
    local_now = now.astimezone(tz).replace(tzinfo=None)
    windows: list[Window] = []
    intervals: list[tuple[datetime, datetime]] = []

    def utc(local: datetime) -> datetime:
        # RFC 5545: a time skipped is read with the offset before, one repeated is the first.
        return local.replace(tzinfo=tz, fold=0).astimezone(UTC)

    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            window, starts = draw(recurring(zone))
            assert window.duration is not None
            first = local_now.date() - timedelta(days=5)
            for offset in range((SCAN + timedelta(days=7)).days):
                for start in starts(first + timedelta(days=offset)):
                    intervals.append((utc(start), utc(start + window.duration)))
        else:
            start = local_now.replace(second=0) + timedelta(
                minutes=draw(st.integers(-3 * 1440, 3 * 1440))
            )
            end = start + timedelta(minutes=draw(st.integers(1, MAX_MINUTES)))
            window = Window("once", "o", zone, start=start, end=end)
            intervals.append((utc(start), utc(end)))
        windows.append(window)
    return windows, intervals, now


def scanned_end(intervals: list[tuple[datetime, datetime]], now: datetime) -> datetime | None:
    """Minute by minute from `now`: the first minute no interval covers (None past SCAN)."""
    base = now.replace(second=0, microsecond=0)
    minutes = int(SCAN / timedelta(minutes=1))
    covered = bytearray(minutes)
    for start, end in intervals:
        low = max(0, int((start - base) / timedelta(minutes=1)))
        high = min(minutes, int((end - base) / timedelta(minutes=1)))
        if high > low:
            covered[low:high] = b"\x01" * (high - low)
    free = covered.find(0)
    return None if free < 0 else base + timedelta(minutes=free)


@PROPERTIES
@given(calendars())
def test_freeze_at_agrees_with_a_minute_by_minute_scan(
    drawn: tuple[list[Window], list[tuple[datetime, datetime]], datetime],
) -> None:
    windows, intervals, now = drawn
    frozen = freeze_at(windows, now)
    if not any(start <= now < end for start, end in intervals):
        assert frozen is None
        return
    end = scanned_end(intervals, now)
    assume(end is not None)
    assert frozen is not None
    assert frozen.end == end
    assert frozen.start <= now
    assert any(
        s.start <= now < s.end
        for s in spans_overlapping(frozen.window, now, now + timedelta(seconds=1))
    )


@PROPERTIES
@given(calendars(), st.integers(1, 4 * 86400), st.integers(0, 4 * 86400))
def test_edges_are_each_window_start_and_end_and_splitting_the_range_changes_nothing(
    drawn: tuple[list[Window], list[tuple[datetime, datetime]], datetime], length: int, cut: int
) -> None:
    windows, intervals, now = drawn
    low, high = now - timedelta(days=1), now - timedelta(days=1) + timedelta(seconds=length)
    middle = min(high, low + timedelta(seconds=cut))
    edges = edges_between(windows, low, high)
    expected = sorted(
        [(s, True) for s, e in intervals if e > s and low < s <= high]
        + [(e, False) for s, e in intervals if e > s and low < e <= high],
        key=lambda edge: (edge[0], edge[1]),
    )
    assert [(e.at, e.opening) for e in edges] == expected
    split = edges_between(windows, low, middle) + edges_between(windows, middle, high)
    assert split == edges


# --- through the app ------------------------------------------------------------------------------


def calendar_yaml(receivers: Receivers, today: datetime) -> str:
    """Backend tells a Slack channel and a webhook of everything. Production freezes every
    weekend in New York; staging (auto-deploy) for the two hours around `today` in Berlin; canary
    takes what ran in staging for an hour."""
    berlin = ZoneInfo("Europe/Berlin")
    since = (today - timedelta(hours=1)).astimezone(berlin).strftime(LOCAL)
    until = (today + timedelta(hours=1)).astimezone(berlin).strftime(LOCAL)
    return f"""
projects:
  - name: Backend
    repo: acme/backend
    notifications:
      - name: deploys
        slack: {{url_env: {SLACK_VARIABLE}}}
      - name: audit
        webhook: {{url: "{receivers.base}/hook", secret_env: {HOOK_VARIABLE}}}
    build:
      workflow: build.yml
    environments:
      - name: staging
        deploy_workflow: deploy.yml
        auto_deploy: true
        freezes:
          - name: demo
            reason: The board is watching staging
            timezone: Europe/Berlin
            from: "{since}"
            until: "{until}"
      - name: production
        deploy_workflow: deploy.yml
        production: true
        freezes:
          - name: weekend
            reason: {WEEKEND_REASON}
            timezone: America/New_York
            rrule: {WEEKEND_RULE}
            duration: 64h
      - name: canary
        deploy_workflow: deploy.yml
        requires: [staging]
        soak_minutes: 60
"""


@pytest.fixture
async def receivers(aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> Receivers:
    found = await start_receivers(aiohttp_server)
    monkeypatch.setenv(SLACK_VARIABLE, found.slack_url)
    monkeypatch.setenv(HOOK_VARIABLE, HOOK_SECRET)
    return found


@pytest.fixture
def projects_file(tmp_path: Path, receivers: Receivers, clock: TestClock) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(calendar_yaml(receivers, clock()))
    return path


def worker_of(client: TestClient[Any, Any]) -> OutboxWorker:
    worker = client.app[SERVICE].outbox_worker
    assert worker is not None
    return worker


def told(receivers: Receivers, event: str) -> list[dict[str, Any]]:
    return [json.loads(body) for _, body in receivers.hooks if json.loads(body)["event"] == event]


async def refusals_audited(db: Database) -> list[tuple[str, str, str | None]]:
    async with db.read() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.decision == "refused").order_by(AuditEvent.id)
        )
        return [(row.door, row.actor or "", row.reason) for row in rows]


@pytest.mark.parametrize(("friday", "monday", "abbreviation", "hours"), WEEKENDS)
async def test_a_deploy_on_friday_evening_is_refused_until_monday_09_00_and_told(
    api: Api,
    clock: TestClock,
    receivers: Receivers,
    db: Database,
    friday: str,
    monday: str,
    abbreviation: str,
    hours: int,
) -> None:
    assert (await api.create_rc("v1-rc1")).status == 201
    clock.now = at(f"{friday} 18:00")
    refused = await api.deploy("production", "v1-rc1")
    assert refused.status == 400
    assert refused.body == {"error": weekend_refusal(monday, abbreviation)}
    clock.now = at(f"{monday} 08:59")
    assert (await api.deploy("production", "v1-rc1")).body == refused.body
    clock.now = at(f"{monday} 09:01")
    allowed = await api.deploy("production", "v1-rc1")
    assert allowed.status == 201, allowed.body

    await worker_of(api.client).drain()
    assert receivers.hook_events() == [
        "deployment.refused",
        "deployment.refused",
        "deployment.started",
    ]
    first = told(receivers, "deployment.refused")[0]
    assert first["reason"] == refused.body["error"]
    assert first["timestamp"] == at(f"{friday} 18:00").isoformat()
    assert (first["actor"], first["environment"]) == ("ci@example.com", "production")
    assert first["release_candidate"]["version"] == "v1-rc1"
    assert first["freeze"] is None  # no manual freeze: the reason says it all
    assert receivers.slack[0]["text"] == (
        f"Deployment refused Backend v1-rc1 to production: {refused.body['error']}"
    )
    check_signatures(receivers)
    assert await refusals_audited(db) == [("api", "ci@example.com", refused.body["error"])] * 2


async def test_every_policy_refusal_through_every_door_is_told_with_its_reason(
    api: Api, client: TestClient[Any, Any], clock: TestClock, receivers: Receivers, db: Database
) -> None:
    assert (await api.create_rc("v1-rc1")).status == 201
    clock.now = at("2026-03-07 12:00")  # a Saturday: production is frozen
    # The promotion order: canary takes only what ran in staging.
    order = await api.deploy("canary", "v1-rc1")
    assert order.status == 400
    assert order.body["error"].startswith("v1-rc1 must succeed in staging before it goes to")
    # GraphQL.
    graphql = await gql(
        api,
        'mutation { deploy(project: "Backend", environment: "production", version: "v1-rc1")'
        " { id } }",
    )
    assert graphql["errors"][0]["message"] == weekend_refusal("2026-03-09", "EDT")
    # The dashboard, signed in with a token of its own.
    token = await make_token(db, "dashboard", actor="rm@example.com")
    browser = await sign_in(client, token)
    async with browser:
        page = "/projects/Backend/environments/production"
        fields = await form_fields(browser, page)
        async with browser.post(
            page + "/deploy", data={**fields, "version": "v1-rc1"}, allow_redirects=False
        ) as answer:
            assert answer.status == 303
        async with browser.get(page) as answer:
            assert weekend_refusal("2026-03-09", "EDT") in html.unescape(await answer.text())
    # A rollback with nothing to roll back to is no policy refusal: not told.
    assert (await api.rollback("production")).status == 404

    await worker_of(api.client).drain()
    refusals = told(receivers, "deployment.refused")
    assert [(m["environment"], m["actor"], m["reason"]) for m in refusals] == [
        ("canary", "ci@example.com", order.body["error"]),
        ("production", "ci@example.com", weekend_refusal("2026-03-09", "EDT")),
        ("production", "rm@example.com", weekend_refusal("2026-03-09", "EDT")),
    ]
    for message in refusals:
        NotificationBody.model_validate(message)
    # Each audited once too (which door the dashboard names is its own business).
    assert [(actor, reason) for _, actor, reason in await refusals_audited(db)] == [
        (m["actor"], m["reason"]) for m in refusals
    ]


async def test_a_pr_command_and_auto_deploy_refused_by_the_calendar_are_told(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    receivers: Receivers,
    db: Database,
) -> None:
    # Staging is frozen for the two hours around now (the fake GitHub's clock is real time).
    fake_github.grant("acme/backend", "octocat", "write")
    build = await tagged_rc(webhook, outbox, fake_github, "v1-rc1", SHA_A)
    await accepted(webhook, "workflow_run", run_event("completed", build, "success"))
    await outbox.drain()
    await send_comment(webhook, outbox, "/deploy v1-rc1 to staging")

    refusals = told(receivers, "deployment.refused")
    assert [(m["environment"], m["actor"]) for m in refusals] == [
        ("staging", "tarmac (auto-deploy)"),
        ("staging", "github:octocat"),
    ]
    for message in refusals:
        assert message["reason"].startswith("Environment is frozen until ")
        assert "by its calendar window 'demo': The board is watching staging" in message["reason"]
        assert message["release_candidate"]["version"] == "v1-rc1"
    assert [(actor, reason) for _, actor, reason in await refusals_audited(db)] == [
        (m["actor"], m["reason"]) for m in refusals
    ]
    assert fake_github.deployments == {}
    check_signatures(receivers)


# --- windows told as they open and close ---------------------------------------------------------


async def watermark(db: Database, environment: str = "production") -> datetime | None:
    async with db.read() as session:
        found: datetime | None = await session.scalar(
            select(Environment.calendar_checked_at).where(Environment.name == environment)
        )
        return found


def window_messages(receivers: Receivers) -> list[dict[str, Any]]:
    return [
        json.loads(body)
        for _, body in receivers.hooks
        if json.loads(body)["event"].startswith("freeze_window.")
    ]


@pytest.mark.both_databases
async def test_a_window_opening_and_closing_is_told_once_each_by_two_replicas_and_a_restart(
    settings: Settings, receivers: Receivers, db: Database
) -> None:
    now = at("2026-03-06 16:00")

    def clock() -> datetime:
        return now

    def behind() -> datetime:
        # The second replica's clock is 30 seconds behind the first's.
        return now - timedelta(seconds=30)

    first = await open_service(settings, clock=clock)
    second = await open_service(settings, clock=behind)
    try:
        moments = [
            "2026-03-06 16:00",  # first sight: no backlog of last weekend's edges
            "2026-03-06 16:59",
            "2026-03-06 17:00",
            "2026-03-06 17:00",
            "2026-03-06 17:01",
            "2026-03-07 12:00",
            "2026-03-09 08:59",
            "2026-03-09 09:00",
            "2026-03-09 09:00",
            "2026-03-09 09:01",
            "2026-03-09 10:30",
        ]
        for moment in moments:
            now = at(moment)
            for _ in range(3):
                await asyncio.gather(
                    sweep_freeze_windows(first.db, first.clock),
                    sweep_freeze_windows(second.db, second.clock),
                )
        assert await watermark(db) is not None
    finally:
        await second.close()
        await first.close()
    # A restart: a third service finds nothing new to tell.
    restarted = await open_service(settings, clock=clock)
    try:
        assert await sweep_freeze_windows(restarted.db, restarted.clock) == 0
        assert restarted.outbox_worker is not None
        await restarted.outbox_worker.drain()
    finally:
        await restarted.close()

    messages = window_messages(receivers)
    assert [m["event"] for m in messages] == ["freeze_window.opened", "freeze_window.closed"]
    for message in messages:
        NotificationBody.model_validate(message)
        assert message["environment"] == "production"
        assert message["window"] == {
            "name": "weekend",
            "reason": WEEKEND_REASON,
            "timezone": NY,
            "start": "2026-03-06T22:00:00+00:00",
            "end": "2026-03-09T13:00:00+00:00",
            "start_local": "2026-03-06T17:00:00-05:00",
            "end_local": "2026-03-09T09:00:00-04:00",
        }
    assert [m["timestamp"] for m in messages] == [
        "2026-03-06T22:00:00+00:00",
        "2026-03-09T13:00:00+00:00",
    ]
    assert [m["text"] for m in receivers.slack] == [
        "Freeze window opened Backend in production (weekend)",
        "Freeze window closed Backend in production (weekend)",
    ]
    assert (
        "From Friday 2026-03-06 17:00 EST (America/New_York) until Monday 2026-03-09 09:00 EDT "
        "(America/New_York)"
    ) in json.dumps(receivers.slack[0])
    check_signatures(receivers)


async def test_the_service_sweeps_on_its_own_every_calendar_sweep_seconds(
    settings: Settings, receivers: Receivers, db: Database
) -> None:
    clock = TestClock()
    clock.now = at("2026-10-30 16:00")
    fast = settings.model_copy(update={"calendar_sweep_seconds": 0.05})
    service: Service = await open_service(fast, clock=clock)
    service.start_background_work()
    try:
        await until(lambda: watermark(db), "the first look at production's windows")
        clock.now = at("2026-10-30 17:30")
        await until(lambda: _has(receivers, "freeze_window.opened"), "the window told open")
        clock.now = at("2026-11-02 09:00")
        await until(lambda: _has(receivers, "freeze_window.closed"), "the window told closed")
    finally:
        await service.close()
    [closed] = [m for m in window_messages(receivers) if m["event"] == "freeze_window.closed"]
    assert closed["window"]["end_local"] == "2026-11-02T09:00:00-05:00"
    assert closed["window"]["end"] == "2026-11-02T14:00:00+00:00"


async def _has(receivers: Receivers, event: str) -> bool:
    return event in receivers.hook_events()


async def until(check: Callable[[], Any], what: str, deadline_seconds: float = 30) -> None:
    """Wait for an async condition (a database read, a delivery)."""
    deadline = time.monotonic() + deadline_seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
