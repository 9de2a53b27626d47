"""Deliveries no handler acts on are decided at intake (bot/github/inbound/triage.py): the
outcome stored there is the one the handlers would have stored, what may concern a project is
left to them, and such a delivery is recorded at once without an inbox row."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from gidgethub import sansio
from sqlalchemy import select

from bot.app.operations import Mirror
from bot.github.inbound.context import WebhookContext
from bot.github.inbound.inbox import Handled, InboxReader
from bot.github.inbound.intake import DeliveryIntake
from bot.github.inbound.router import dispatch
from bot.github.inbound.triage import outcome_without_handling
from bot.service import Service, open_service
from bot.settings import Settings
from bot.storage.models import WebhookDelivery, WebhookInboxItem
from bot.storage.projects import project_repositories
from tests.conftest import SHA_A, TestClock
from tests.github_material import examples_of
from tests.test_github_tags import readdress, tag_push

MIRRORED = Mirror(enabled=True)
PROJECT_REPO = "acme/backend"  # Backend's, with build.yml (tests/conftest.py PROJECTS_YAML)
# Events with handlers that check first, and some without (always handled, or never).
CHECKED_EVENTS = ("push", "create", "workflow_run", "workflow_job", "deployment", "issue_comment")
OTHER_EVENTS = ("installation", "installation_repositories", "ping", "release", "deployment_status")


@pytest.fixture
async def service(settings: Settings, clock: TestClock) -> AsyncIterator[Service]:
    opened = await open_service(settings, clock=clock)
    yield opened
    await opened.close()


def deliveries() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(label, event, payload): GitHub's examples as they are (their repositories have no
    project), re-addressed to a project's repository, and the ones that must be handled."""
    for event in CHECKED_EVENTS + OTHER_EVENTS:
        for name, payload in examples_of(event).items():
            yield f"{event}/{name}", event, payload
            if isinstance(payload.get("repository"), dict):
                yield (
                    f"{event}/{name} on {PROJECT_REPO}",
                    event,
                    readdress(copy.deepcopy(payload), PROJECT_REPO),
                )
    yield "tag push", "push", tag_push("v1.0.0-rc1", SHA_A)
    yield "build run", "workflow_run", build_run()
    yield "rollback comment", "issue_comment", rollback_comment()


def build_run() -> dict[str, Any]:
    payload = readdress(examples_of("workflow_run")["completed"], PROJECT_REPO)
    payload["workflow_run"]["path"] = ".github/workflows/build.yml"
    return payload


def rollback_comment() -> dict[str, Any]:
    payload = readdress(examples_of("issue_comment")["created"], PROJECT_REPO)
    payload["issue"]["pull_request"] = {"url": "https://api.github.com/repos/acme/backend/pulls/1"}
    payload["comment"]["body"] = "/rollback production"
    payload["comment"]["user"]["type"] = "User"
    return payload


async def test_what_is_decided_at_intake_is_what_the_handlers_record(
    service: Service, clock: TestClock
) -> None:
    decided: dict[str, str] = {}
    async with service.db.write() as session:
        repositories = await project_repositories(session)
        for n, (label, event_name, payload) in enumerate(deliveries()):
            body = json.dumps(payload).encode()
            event = sansio.Event(payload, event=event_name, delivery_id=f"triage-{n}")
            outcome = outcome_without_handling(event, body, repositories, service.projects)
            if outcome is None:
                continue
            decided[label] = outcome
            context = WebhookContext(
                session=session,
                now=clock(),
                projects=service.projects,
                delivery_id=event.delivery_id,
                repositories=repositories,
                mirror=MIRRORED,
            )
            await dispatch(event, context=context)
            assert context.outcome() == outcome, label
            assert context.ignored, label
        # What was decided wrote nothing.
        assert not session.new
        assert not session.dirty

    # GitHub's examples of checked events are of repositories without projects: all decided.
    for event in CHECKED_EVENTS:
        for name in examples_of(event):
            assert f"{event}/{name}" in decided
    assert decided["release/published"] == "ignored"  # no handler for the event
    assert decided["workflow_run/completed on acme/backend"].endswith("is not of a Tarmac workflow")
    # Left to the handlers: what may concern a project, and events without checks.
    for label in ("tag push", "build run", "rollback comment", "ping/payload"):
        assert label not in decided
    assert not any(label.startswith("installation") for label in decided)


async def test_a_delivery_no_handler_acts_on_is_recorded_at_once_without_the_inbox(
    service: Service, clock: TestClock
) -> None:
    # The reader is not running: only what went to the inbox waits.
    reader = InboxReader(service.db, service.projects, clock, mirror=MIRRORED)
    intake = DeliveryIntake(service.db, reader, service.projects, clock, answer_wait=0)
    run = sansio.Event(
        examples_of("workflow_run")["completed"], event="workflow_run", delivery_id="run-1"
    )
    tag = sansio.Event(tag_push("v1.0.0-rc1", SHA_A), event="push", delivery_id="tag-1")

    def body(event: sansio.Event) -> bytes:
        return json.dumps(event.data).encode()

    outcome = "ignored: no project on octo-org/octo-repo"
    answers = await asyncio.gather(intake.handle(run, body(run)), intake.handle(run, body(run)))
    assert answers == [Handled(True, outcome, ignored=True), Handled(False, outcome)]
    # Nothing went to the inbox: the reader is not woken to take a write turn for nothing.
    assert not reader.round_due
    answers = await asyncio.gather(intake.handle(run, body(run)), intake.handle(tag, body(tag)))
    assert answers == [Handled(False, outcome), None]
    assert reader.round_due
    await intake.close()

    async with service.db.read() as session:
        inbox = list(await session.scalars(select(WebhookInboxItem.delivery_id)))
        rows = {r.delivery_id: r for r in await session.scalars(select(WebhookDelivery))}
    assert inbox == ["tag-1"]
    assert list(rows) == ["run-1"]
    assert (rows["run-1"].event, rows["run-1"].action, rows["run-1"].outcome) == (
        "workflow_run",
        "completed",
        outcome,
    )
