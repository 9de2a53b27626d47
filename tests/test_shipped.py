"""A deployment's success tells what it shipped: the story of issue 14, end to end through the
API, the outbox and the fake GitHub (which validates every call): rc1 runs everywhere, three
pull requests are merged (one outside the project's paths), rc2 goes to staging then
production, and the two pull requests that count each get one note, edited as rc2 moves on;
production's first success publishes rc2's GitHub Release; a rollback takes them out again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.github.outbound.worker import OutboxWorker
from bot.storage.db import Database
from tests.conftest import PROJECTS_YAML, Api
from tests.fake_github import FakeGitHub
from tests.shipping import make_candidate

NOTE_MARK = "<!-- tarmac:pull-request-note -->"


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.yml"
    with_paths = PROJECTS_YAML.replace(
        "    repo: acme/backend\n", '    repo: acme/backend\n    paths: ["src/**"]\n', 1
    )
    path.write_text(with_paths)
    return path


def notes_on(fake: FakeGitHub, number: int) -> list[dict[str, Any]]:
    return [
        c
        for c in fake.comments
        if c["issue_number"] == number and NOTE_MARK in c["body"] and c["repo"] == "acme/backend"
    ]


async def succeed(api: Api, outbox: OutboxWorker, environment: str, version: str) -> None:
    reported = await api.report(environment, version, "success")
    assert reported.status in (200, 201), reported.body
    await outbox.drain()


async def test_a_release_tells_its_pull_requests_and_publishes_its_notes(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database, clock: Any
) -> None:
    history = fake_github.history("acme/backend")
    fake_github.add_tag("acme/backend", "v1-rc1", history.tip or "")
    await make_candidate(db, "v1-rc1", clock(), tag="v1-rc1", commit_sha=history.tip or "")
    await succeed(github_api, outbox, "staging", "v1-rc1")
    await succeed(github_api, outbox, "production", "v1-rc1")
    assert fake_github.comments == []  # the first deployment anywhere ships nothing to tell

    search = history.merge_pull_request("Faster search", [["src/search.py"]])
    history.merge_pull_request("Docs only", [["docs/guide.md"]])
    billing = history.merge_pull_request(
        "Billing retries", [["src/billing.py"], ["README.md"]], style="merge"
    )
    fake_github.add_tag("acme/backend", "v1-rc2", history.tip or "")
    await make_candidate(db, "v1-rc2", clock(), tag="v1-rc2", commit_sha=history.tip or "")

    await succeed(github_api, outbox, "staging", "v1-rc2")
    for number in (search, billing):
        [note] = notes_on(fake_github, number)
        assert "- staging ✅ `v1-rc2` since" in note["body"]
        assert "production" not in note["body"]
    assert len(fake_github.comments) == 2  # the docs-only PR is outside the project's paths
    first_bodies = {n: notes_on(fake_github, n)[0]["body"] for n in (search, billing)}

    await succeed(github_api, outbox, "production", "v1-rc2")
    for number in (search, billing):
        [note] = notes_on(fake_github, number)  # edited, never a second comment
        assert note["body"] != first_bodies[number]
        assert "- staging ✅ `v1-rc2` since" in note["body"]
        assert "- production ✅ `v1-rc2` since" in note["body"]
    assert len(fake_github.calls_to("POST", r"/issues/\d+/comments$")) == 2
    assert len(fake_github.calls_to("PATCH", r"/issues/comments/\d+$")) == 2

    [release] = [r for r in fake_github.releases_of("acme/backend") if r["tag_name"] == "v1-rc2"]
    assert f"#{search}" in release["body"]
    assert f"#{billing}" in release["body"]
    assert "Docs only" not in release["body"]

    rolled = await github_api.rollback("production")
    assert rolled.status == 201, rolled.body
    await succeed(github_api, outbox, "production", "v1-rc1")
    for number in (search, billing):
        [note] = notes_on(fake_github, number)
        assert "- production ↩️ rolled back to `v1-rc1` at" in note["body"]
    assert len(fake_github.calls_to("POST", r"/issues/\d+/comments$")) == 2
    # Each report was fetched once: the rollback's reverse report was stored by production's.
    assert len(fake_github.calls_to("GET", "/compare/")) == 2


async def test_a_lost_answer_while_posting_a_note_makes_no_second_note(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database, clock: Any
) -> None:
    history = fake_github.history("acme/backend")
    await make_candidate(db, "v1-rc1", clock(), commit_sha=history.tip or "")
    await succeed(github_api, outbox, "staging", "v1-rc1")
    number = history.merge_pull_request("One change", [["src/one.py"]])
    await make_candidate(db, "v1-rc2", clock(), commit_sha=history.tip or "")
    fake_github.fail(r"/issues/\d+/comments$", method="POST", drop_after_processing=True)

    await succeed(github_api, outbox, "staging", "v1-rc2")
    clock.advance(seconds=60)
    await outbox.drain()

    assert len(notes_on(fake_github, number)) == 1
    assert len(fake_github.calls_to("POST", r"/issues/\d+/comments$")) == 1


async def test_without_a_tag_there_is_no_release_and_switches_are_honoured(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database, clock: Any
) -> None:
    history = fake_github.history("acme/backend")
    assert (await github_api.create_rc("v1-rc1", history.tip or "")).status == 201
    await succeed(github_api, outbox, "production", "v1-rc1")
    assert fake_github.releases_of("acme/backend") == []
    assert fake_github.calls_to("GET", "/releases/") == []
