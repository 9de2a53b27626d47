"""The GitHub Release of a tag whose candidate first succeeds in production
(bot/app/shipped.py plan_release, bot/github/outbound/releases.py), delivered by the real
outbox worker to the fake GitHub."""

from __future__ import annotations

import pytest

from bot.github.outbound.worker import OutboxWorker
from bot.storage.db import Database
from bot.storage.outbox import pending_count
from tests.conftest import TestClock
from tests.fake_github import FakeGitHub
from tests.shipping import BACKEND, commit, make_candidate, pull_request, released

RELEASES = r"/releases"


@pytest.fixture
async def tagged(
    db: Database, clock: TestClock, fake_github: FakeGitHub, outbox: OutboxWorker
) -> None:
    """v1.3.0-rc2 and v1.4.0-rc1 of Backend, made from their tags."""
    for version in ("v1.3.0-rc2", "v1.4.0-rc1"):
        fake_github.add_tag(BACKEND, version, "a" * 40)
        await make_candidate(db, version, clock.now, tag=version)


@pytest.mark.both_databases
async def test_the_first_production_success_creates_the_release_with_its_notes(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub, tagged: None
) -> None:
    await released(
        db, "v1.4.0-rc1", clock.now, previous="v1.3.0-rc2",
        pull_requests=[pull_request(7, "Faster deploys", "ada")],
        commits=[commit("c" * 40, "Fix a typo")],
    )  # fmt: skip
    await outbox.drain()

    [release] = fake_github.releases_of(BACKEND)
    assert release["tag_name"] == "v1.4.0-rc1"
    assert release["name"] == "v1.4.0-rc1"
    assert release["body"].splitlines() == [
        "## Changes in v1.4.0-rc1, since v1.3.0-rc2",
        "",
        "### Pull requests",
        "- Faster deploys ([#7](https://github.com/acme/backend/pull/7)) by @ada",
        "",
        "### Commits without a pull request",
        "- [`ccccccc`](https://github.com/acme/backend/commit/" + "c" * 40 + ") Fix a typo (Ada)",
    ]


async def test_a_second_call_updates_the_release(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub, tagged: None
) -> None:
    await released(db, "v1.4.0-rc1", clock.now, pull_requests=[pull_request(7)])
    await outbox.drain()
    await released(db, "v1.4.0-rc1", clock.now, pull_requests=[pull_request(7), pull_request(8)])
    await outbox.drain()

    [release] = fake_github.releases_of(BACKEND)
    assert "#8" in release["body"]
    assert len(fake_github.calls_to("POST", RELEASES + "$")) == 1
    assert len(fake_github.calls_to("PATCH", RELEASES + r"/\d+$")) == 1


async def test_a_lost_answer_to_the_post_makes_no_second_release(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub, tagged: None
) -> None:
    fake_github.fail(RELEASES + "$", method="POST", drop_after_processing=True)
    await released(db, "v1.4.0-rc1", clock.now, pull_requests=[pull_request(7)])
    await outbox.drain()
    clock.advance(seconds=11)
    await outbox.drain()

    assert len(fake_github.releases_of(BACKEND)) == 1
    assert len(fake_github.calls_to("POST", RELEASES + "$")) == 1
    async with db.read() as session:
        assert await pending_count(session) == 0


async def test_a_release_a_person_wrote_is_left_as_it_is(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub, tagged: None
) -> None:
    fake_github.add_release(BACKEND, "v1.4.0-rc1", "Hand-written notes")
    await released(db, "v1.4.0-rc1", clock.now, pull_requests=[pull_request(7)])
    await outbox.drain()

    [release] = fake_github.releases_of(BACKEND)
    assert release["body"] == "Hand-written notes"
    assert fake_github.calls_to("PATCH", RELEASES) == []


async def test_a_candidate_without_a_tag_makes_no_call(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await make_candidate(db, "v2.0.0-rc1", clock.now)  # made through the API: no tag
    await released(db, "v2.0.0-rc1", clock.now, pull_requests=[pull_request(7)])

    async with db.read() as session:
        assert await pending_count(session) == 0
    await outbox.drain()
    assert fake_github.calls_to("GET", RELEASES) == []


async def test_the_switch_off_makes_no_release(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub, tagged: None
) -> None:
    await released(db, "v1.4.0-rc1", clock.now, releases_on=False)

    async with db.read() as session:
        assert await pending_count(session) == 0


async def test_a_tag_with_a_slash_is_one_path_segment(
    db: Database, clock: TestClock, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    fake_github.add_tag("acme/monorepo", "frontend/v3.0.0-rc1", "b" * 40)
    await make_candidate(db, "v3.0.0-rc1", clock.now, tag="frontend/v3.0.0-rc1", project="Frontend")
    await released(db, "v3.0.0-rc1", clock.now, project="Frontend")
    await outbox.drain()

    [release] = fake_github.releases_of("acme/monorepo")
    assert release["tag_name"] == "frontend/v3.0.0-rc1"
    assert release["name"] == "Frontend v3.0.0-rc1"
