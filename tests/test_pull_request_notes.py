"""Tarmac's note on each pull request that ships: one comment, made on the first success and
edited as the pull request moves on (bot/app/shipped.py, bot/github/outbound/pull_requests.py),
delivered by the real outbox worker to the fake GitHub; exactly one across lost answers and a
worker killed between its call and its record; content calls paced."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from api.keys import SERVICE
from bot.domain.pull_request_notes import NOTE_MARKER
from bot.github.outbound.effects import EffectContext
from bot.github.outbound.handlers import load_all
from bot.github.outbound.pacing import ContentPacer
from bot.github.outbound.worker import OutboxWorker, handler_for
from bot.storage.db import Database
from bot.storage.outbox import Action, claim_due, pending_count
from tests.conftest import BACKEND_INSTALLATION, TestClock
from tests.fake_github import FakeGitHub
from tests.processes import eventually
from tests.shipping import make_candidate, pull_request, shipped

PR_7, PR_8 = pull_request(7), pull_request(8)
COMMENTS = r"/issues/\d+/comments$"
EDITS = r"/issues/comments/\d+$"


def notes_on(fake: FakeGitHub, number: int) -> list[dict[str, Any]]:
    return [c for c in fake.comments if c["issue_number"] == number and NOTE_MARKER in c["body"]]


def lines(comment: dict[str, Any]) -> list[str]:
    return [line for line in comment["body"].splitlines() if line.startswith("- ")]


def at(clock: TestClock) -> str:
    return clock.now.strftime("%Y-%m-%d %H:%M UTC")


@pytest.fixture
async def candidates(db: Database, clock: TestClock, outbox: OutboxWorker) -> None:
    """v1.3.0-rc1 and v1.4.0-rc1 of Backend (staging, then production)."""
    await make_candidate(db, "v1.3.0-rc1", clock.now)
    await make_candidate(db, "v1.4.0-rc1", clock.now)


@pytest.mark.both_databases
async def test_staging_then_production_make_one_comment_per_pr_edited(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub, candidates: None
) -> None:
    await shipped(db, "staging", "v1.4.0-rc1", clock.now, came_in=[PR_7, PR_8])
    await outbox.drain()
    staging_at = at(clock)
    [note_7], [note_8] = notes_on(fake_github, 7), notes_on(fake_github, 8)
    assert lines(note_7) == [f"- staging ✅ `v1.4.0-rc1` since {staging_at}"]

    clock.advance(minutes=90)
    await shipped(db, "production", "v1.4.0-rc1", clock.now, came_in=[PR_7, PR_8])
    await outbox.drain()

    assert notes_on(fake_github, 7) == [note_7]
    assert notes_on(fake_github, 8) == [note_8]
    expected = [
        f"- staging ✅ `v1.4.0-rc1` since {staging_at}",
        f"- production ✅ `v1.4.0-rc1` since {at(clock)}",
    ]
    assert lines(note_7) == expected
    assert lines(note_8) == expected
    assert len(fake_github.calls_to("POST", COMMENTS)) == 2
    assert len(fake_github.calls_to("PATCH", EDITS)) == 2
    assert note_7["performed_via_github_app"]["id"] == fake_github.app_id


async def test_queued_updates_converge_on_the_latest_state_with_one_call(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub, candidates: None
) -> None:
    await shipped(db, "staging", "v1.4.0-rc1", clock.now, came_in=[PR_7])
    await shipped(db, "production", "v1.4.0-rc1", clock.now, came_in=[PR_7])
    await outbox.drain()

    [note] = notes_on(fake_github, 7)
    assert [line.split(" ✅")[0] for line in lines(note)] == ["- staging", "- production"]
    assert len(fake_github.calls_to("POST", COMMENTS)) == 1
    assert fake_github.calls_to("PATCH", EDITS) == []  # the second item found nothing newer


async def test_a_rollback_that_takes_the_pr_out_edits_its_note(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub, candidates: None
) -> None:
    await shipped(db, "production", "v1.4.0-rc1", clock.now, came_in=[PR_7])
    await outbox.drain()
    clock.advance(minutes=5)

    await shipped(db, "production", "v1.3.0-rc1", clock.now, went_out=[PR_7, PR_8])
    await outbox.drain()

    [note] = notes_on(fake_github, 7)
    assert lines(note) == [f"- production ↩️ rolled back to `v1.3.0-rc1` at {at(clock)}"]
    assert notes_on(fake_github, 8) == []  # never noted: no note for leaving


async def test_the_same_success_told_twice_enqueues_nothing_more(
    db: Database, clock: TestClock, outbox: OutboxWorker, candidates: None
) -> None:
    await shipped(db, "staging", "v1.4.0-rc1", clock.now, came_in=[PR_7])
    await outbox.drain()

    await shipped(db, "staging", "v1.4.0-rc1", clock.now, came_in=[PR_7])

    async with db.read() as session:
        assert await pending_count(session) == 0


async def test_the_switch_off_enqueues_nothing(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub, candidates: None
) -> None:
    await shipped(db, "staging", "v1.4.0-rc1", clock.now, came_in=[PR_7], comments_on=False)

    async with db.read() as session:
        assert await pending_count(session) == 0
    await outbox.drain()
    assert fake_github.comments == []


@pytest.mark.both_databases
async def test_a_lost_answer_to_the_post_adopts_the_comment_it_made(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub, candidates: None
) -> None:
    fake_github.fail(COMMENTS, method="POST", drop_after_processing=True)
    await shipped(db, "staging", "v1.4.0-rc1", clock.now, came_in=[PR_7])
    await outbox.drain()
    assert len(notes_on(fake_github, 7)) == 1  # it landed; Tarmac does not know

    clock.advance(seconds=11)  # the uncertain item is looked at again once settled
    await shipped(db, "production", "v1.4.0-rc1", clock.now, came_in=[PR_7])
    await outbox.drain()

    [note] = notes_on(fake_github, 7)
    assert [line.split(" ✅")[0] for line in lines(note)] == ["- staging", "- production"]
    assert len(fake_github.calls_to("POST", COMMENTS)) == 1
    assert len(fake_github.calls_to("GET", COMMENTS)) == 1  # looked once, then knew its id


@pytest.mark.both_databases
async def test_a_worker_killed_between_post_and_record_makes_no_duplicate(
    db: Database,
    clock: TestClock,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    github_client: TestClient[Any, Any],
    candidates: None,
) -> None:
    await shipped(db, "staging", "v1.4.0-rc1", clock.now, came_in=[PR_7])
    await _deliver_and_die(db, clock, github_client)
    assert len(notes_on(fake_github, 7)) == 1

    clock.advance(seconds=16)  # the dead worker's lease ends
    await outbox.drain()
    await shipped(db, "production", "v1.4.0-rc1", clock.now, came_in=[PR_7])
    await outbox.drain()

    [note] = notes_on(fake_github, 7)
    assert len(lines(note)) == 2
    assert len(fake_github.calls_to("POST", COMMENTS)) == 1


async def _deliver_and_die(db: Database, clock: TestClock, client: TestClient[Any, Any]) -> None:
    """What a worker SIGKILLed after its GitHub call leaves: the claim committed (its attempt
    counted), the call made, the outcome never recorded."""
    service = client.app[SERVICE]
    assert service.github is not None
    async with db.write() as session:
        [item] = await claim_due(session, clock.now, 10)
    assert item.action == Action.UPDATE_PULL_REQUEST_NOTE
    handler = handler_for(load_all(), item.action)
    assert handler is not None
    context = EffectContext(
        client=service.github,
        db=db,
        clock=clock,
        mirror=service.mirror,
        installation_id=BACKEND_INSTALLATION,
    )
    assert await handler(context, item) is not None  # a recorder that never runs


async def test_a_deleted_note_is_posted_again(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub, candidates: None
) -> None:
    await shipped(db, "staging", "v1.4.0-rc1", clock.now, came_in=[PR_7])
    await outbox.drain()
    [first] = notes_on(fake_github, 7)
    fake_github.delete_comment(first["id"])

    await shipped(db, "production", "v1.4.0-rc1", clock.now, came_in=[PR_7])
    await outbox.drain()

    [again] = notes_on(fake_github, 7)
    assert again["id"] != first["id"]
    assert len(lines(again)) == 2


async def test_content_calls_are_serial_and_a_second_apart(
    db: Database,
    clock: TestClock,
    fake_github: FakeGitHub,
    github_client: TestClient[Any, Any],
    candidates: None,
) -> None:
    service = github_client.app[SERVICE]
    assert service.github is not None
    # GitHub's pace (1 s), on the wall clock pacing counts in.
    worker = OutboxWorker(
        db,
        service.github,
        lambda: datetime.now(UTC),
        load_all(),
        mirror=service.mirror,
        pacer=ContentPacer(),
        idle_poll=0.05,
    )
    await shipped(
        db, "staging", "v1.4.0-rc1", clock.now, came_in=[pull_request(n) for n in (1, 2, 3)]
    )
    task = asyncio.create_task(worker.run())
    await eventually(lambda: len(fake_github.comments) == 3, "three notes", 10)
    worker.stop()
    await task

    starts = [call.at for call in fake_github.calls_to("POST", COMMENTS)]
    assert len(starts) == 3
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(starts))
    assert worker.stats.put_back >= 2
    assert worker.stats.retried == 0
