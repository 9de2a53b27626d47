"""The pure halves of pull-request notes, release notes and content pacing: what a note and a
release say, and when the next content call may go."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.domain.changes import Commit, PullRequest
from bot.domain.pull_request_notes import NOTE_MARKER, NoteLine, Presence, note_body
from bot.domain.release_notes import release_notes
from bot.github.outbound.pacing import ContentPacer, Limits, seconds_until_turn

AT = datetime(2026, 12, 1, 14, 3, tzinfo=UTC)


def test_a_note_has_the_marker_and_one_line_per_environment_in_order() -> None:
    body = note_body(
        [
            NoteLine("Backend", "staging", Presence.IN, "v1.4.0-rc1", AT),
            NoteLine("Backend", "production", Presence.OUT, "v1.3.0-rc1", AT),
        ]
    )

    assert body.splitlines()[0] == NOTE_MARKER
    assert body.splitlines()[-2:] == [
        "- staging ✅ `v1.4.0-rc1` since 2026-12-01 14:03 UTC",
        "- production ↩️ rolled back to `v1.3.0-rc1` at 2026-12-01 14:03 UTC",
    ]


def test_a_note_across_projects_names_them_and_a_backtick_cannot_break_out() -> None:
    body = note_body(
        [
            NoteLine("Web", "production", Presence.IN, "v1`x-rc1", AT),
            NoteLine("Api", "production", Presence.IN, "v2-rc1", AT),
        ]
    )

    assert "- Web production ✅ `v1'x-rc1` since" in body
    assert "- Api production ✅ `v2-rc1` since" in body


def _pr(number: int) -> PullRequest:
    return PullRequest(number, f"Change {number}", None, f"https://x/pull/{number}", None)


def test_release_notes_without_changes_say_so() -> None:
    notes = release_notes(version="v1-rc1", previous_version=None, pull_requests=[], commits=[])

    assert notes == "## Changes in v1-rc1, the first production release\n\nNo changes.\n"


def test_release_notes_are_cut_to_the_limit_saying_how_many_were_left_out() -> None:
    prs = [_pr(n) for n in range(1, 201)]
    commits = [Commit("d" * 40, "Tidy", None, "https://x/commit/d")] * 50

    notes = release_notes(
        version="v2-rc1", previous_version="v1-rc3", pull_requests=prs, commits=commits,
        max_length=2_000,
    )  # fmt: skip

    assert len(notes) <= 2_000
    shown = [line for line in notes.splitlines() if line.startswith("- ")]
    assert notes.splitlines()[-1].startswith(f"…and {250 - len(shown)} more changes, left out")
    assert shown[0] == "- Change 1 ([#1](https://x/pull/1))"


def test_the_next_content_call_waits_for_the_interval_and_the_windows() -> None:
    limits = Limits(interval=1.0, per_minute=3, per_hour=4)

    def wait(now: float, busy: bool = False, last_end: float | None = None, starts=()) -> float:  # type: ignore[no-untyped-def]
        return seconds_until_turn(
            now=now, busy=busy, last_end=last_end, starts=starts, limits=limits
        )

    assert wait(100.0) == 0.0
    assert wait(100.0, busy=True) == 1.0
    assert wait(100.5, last_end=100.0) == 0.5
    assert wait(100.0, starts=[50.0, 70.0, 90.0]) == 10.0  # the minute's third ends at 110
    assert wait(4000.0, starts=[1000.0, 2000.0, 3000.0, 3990.0]) == 600.0  # the hour's fourth


def test_the_pacer_gives_one_turn_at_a_time_and_schedules_those_put_back() -> None:
    now = [10.0]
    pacer = ContentPacer(Limits(interval=1.0), monotonic=lambda: now[0])

    assert pacer.start()
    assert not pacer.start()
    assert pacer.schedule(3) == [1.0, 2.0, 3.0]
    pacer.finish()
    now[0] = 10.4
    assert not pacer.start()
    now[0] = 11.0
    assert pacer.start()
