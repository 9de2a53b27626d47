"""Deployments mirrored on GitHub through the outbox: the GitHub Deployment, the deploy
workflow, statuses, cancels; across outages, rate limits and answers lost mid-call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

import pytest
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.github.outbound.effects import PRELOADERS
from bot.github.outbound.worker import OutboxWorker
from bot.storage.outbox import ClaimedItem
from tests.conftest import SHA_A, SHA_B, Api, TestClock
from tests.fake_github import FakeGitHub


def github_deployments(fake: FakeGitHub) -> list[dict[str, Any]]:
    return fake.deployments.get("acme/backend", [])


def mirror_of(fake: FakeGitHub, deployment_id: int) -> dict[str, Any]:
    [found] = [
        d for d in github_deployments(fake) if d["payload"]["tarmac_deployment_id"] == deployment_id
    ]
    return found


def states(fake: FakeGitHub, github_id: int) -> list[str]:
    return [s["state"] for s in fake.statuses[github_id]]


@pytest.mark.both_databases
async def test_a_deploy_creates_a_github_deployment_runs_the_workflow_and_posts_statuses(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A.upper())
    deployed = await github_api.deploy("production", "v1-rc1")

    await outbox.drain()

    [created] = github_deployments(fake_github)
    assert created["sha"] == SHA_A
    assert created["environment"] == "production"
    assert created["production_environment"] is True
    assert created["auto_merge"] is False
    assert created["required_contexts"] == []
    assert created["payload"] == {
        "tarmac_deployment_id": deployed.body["id"],
        "project": "Backend",
        "release_candidate_version": "v1-rc1",
        "kind": "deploy",
    }
    [run] = fake_github.runs.values()
    assert (run.workflow, run.ref) == ("deploy.yml", "main")
    assert run.inputs == {
        "tarmac_deployment_id": str(deployed.body["id"]),
        "tarmac_environment": "production",
        "tarmac_release_candidate_version": "v1-rc1",
        "tarmac_commit_sha": SHA_A,
    }
    assert fake_github.calls_to("POST", r"/dispatches$")[0].body["return_run_details"] is True
    assert states(fake_github, created["id"]) == ["pending"]

    await github_api.report("production", "v1-rc1", "success")
    await outbox.drain()

    [_pending, success] = fake_github.statuses[created["id"]]
    assert success["state"] == "success"
    assert success["log_url"] == f"https://github.com/acme/backend/actions/runs/{run.id}"
    assert len(success["description"]) <= 140
    assert "environment_url" not in success  # production has no url in the test file


async def test_a_reported_deployment_is_mirrored_but_runs_nothing(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1")

    await github_api.report("staging", "v1-rc1", "in_progress")
    await github_api.report("staging", "v1-rc1", "unknown")
    await github_api.report("staging", "v1-rc1", "success")
    await outbox.drain()

    [created] = github_deployments(fake_github)
    assert created["environment"] == "staging"
    assert created["payload"]["kind"] == "reported"
    assert fake_github.runs == {}
    # `unknown` posts nothing; every status carries the environment's url.
    assert states(fake_github, created["id"]) == ["in_progress", "success"]
    assert {s["environment_url"] for s in fake_github.statuses[created["id"]]} == {
        "https://staging.example.com"
    }


async def database_gone(session: AsyncSession, items: Sequence[ClaimedItem]) -> NoReturn:
    raise OperationalError("SELECT", {}, ConnectionResetError("the database went away"))


# A round's effects read what they need in one query per action (`@preload`); when that fails,
# each effect reads for itself and GitHub sees the same calls.
@pytest.mark.parametrize("preloading", ["works", "fails"])
async def test_a_rollback_cancels_the_superseded_run_and_marks_it_inactive(
    github_api: Api,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    preloading: str,
) -> None:
    # The rollback below needs all four: create, dispatch, status and cancel.
    preloaded = {
        "create_github_deployment",
        "dispatch_deploy_workflow",
        "post_deployment_status",
        "cancel_workflow_run",
    }
    assert preloaded <= set(PRELOADERS)
    if preloading == "fails":
        for action in preloaded:
            monkeypatch.setitem(PRELOADERS, action, database_gone)
    await github_api.ship("production", "v1-rc1")
    await github_api.create_rc("v2-rc1", SHA_B)
    superseded = await github_api.deploy("production", "v2-rc1")
    await outbox.drain()
    superseded_run = max(fake_github.runs)

    rolled = await github_api.rollback("production")
    await outbox.drain()

    assert rolled.body["release_candidate_version"] == "v1-rc1"
    assert fake_github.runs[superseded_run].canceled
    second = mirror_of(fake_github, superseded.body["id"])
    rollback = mirror_of(fake_github, rolled.body["id"])
    assert states(fake_github, second["id"]) == ["pending", "inactive"]
    assert rollback["payload"]["kind"] == "rollback"
    assert rollback["sha"] == SHA_A
    assert states(fake_github, rollback["id"]) == ["pending"]
    # v1 had succeeded before the worker got to it, so only v2 and the rollback ran.
    assert len(fake_github.runs) == 2


@pytest.mark.both_databases
async def test_statuses_reach_github_in_order_after_an_outage(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub, clock: TestClock
) -> None:
    await github_api.create_rc("v1-rc1")
    await github_api.deploy("production", "v1-rc1")
    for status in ("in_progress", "failure"):
        await github_api.report("production", "v1-rc1", status)
    fake_github.fail(r"^/repos/", status=502, times=1000)

    for _ in range(5):  # GitHub down: every attempt fails, nothing is lost
        await outbox.drain()
        clock.advance(minutes=10)
    assert github_deployments(fake_github) == []

    fake_github.faults.clear()
    await outbox.drain()
    clock.advance(minutes=10)
    await outbox.drain()

    [created] = github_deployments(fake_github)
    assert states(fake_github, created["id"]) == ["pending", "in_progress", "failure"]
    # It had failed by the time GitHub was back: its workflow is not started any more.
    assert fake_github.runs == {}


@pytest.mark.both_databases
async def test_an_answer_lost_after_github_acted_is_not_acted_on_twice(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub, clock: TestClock
) -> None:
    await github_api.create_rc("v1-rc1")
    await github_api.deploy("staging", "v1-rc1")
    fake_github.fail(r"/deployments$", method="POST", drop_after_processing=True)
    fake_github.fail(r"/statuses$", method="POST", drop_after_processing=True)

    for _ in range(4):
        await outbox.drain()
        clock.advance(minutes=1)

    assert len(github_deployments(fake_github)) == 1
    [created] = github_deployments(fake_github)
    assert states(fake_github, created["id"]) == ["pending"]
    assert len(fake_github.runs) == 1
    assert fake_github.calls_to("GET", r"/deployments$")  # it looked before creating again


@pytest.mark.both_databases
async def test_a_rate_limit_holds_every_call_to_that_installation_until_its_time(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub, clock: TestClock
) -> None:
    await github_api.create_rc("v1-rc1")
    await github_api.deploy("staging", "v1-rc1")
    await github_api.deploy("production", "v1-rc1")
    fake_github.fail(r"/deployments$", method="POST", status=429, headers={"Retry-After": "90"})

    await outbox.drain()
    calls = len(fake_github.calls)
    clock.advance(seconds=60)
    await outbox.drain()
    assert len(fake_github.calls) == calls  # not before the 90 seconds GitHub asked for

    clock.advance(seconds=31)
    await outbox.drain()
    clock.advance(seconds=5)
    await outbox.drain()
    assert len(github_deployments(fake_github)) == 2


async def test_a_missing_deploy_workflow_ends_the_deployment_in_error(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1")
    await github_api.deploy("production", "v1-rc1")
    fake_github.fail(r"/dispatches$", status=404)

    await outbox.drain()

    [deployment] = (await github_api.deployments("production")).body
    assert deployment["status"] == "error"
    assert deployment["error_message"].startswith("Deploy workflow could not be started")
    [created] = github_deployments(fake_github)
    assert states(fake_github, created["id"]) == ["pending", "error"]


async def test_a_repository_without_the_app_records_why_on_the_deployment(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    fake_github.installations.pop("acme/backend")
    await github_api.create_rc("v1-rc1")
    await github_api.deploy("staging", "v1-rc1")

    await outbox.drain()

    [deployment] = (await github_api.deployments("staging")).body
    assert "not installed" in deployment["error_message"]
    assert fake_github.calls_to("GET", r"/installation$")


async def test_without_a_github_app_nothing_is_queued(api: Api, db: Any) -> None:
    from sqlalchemy import func, select

    from bot.storage.models import OutboxItem

    await api.ship("production", "v1-rc1")
    async with db.read() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxItem)) == 0


@pytest.mark.both_databases
async def test_a_new_deployment_cancels_the_superseded_run_and_marks_it_inactive(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    await github_api.create_rc("v2-rc1", SHA_B)
    first = await github_api.deploy("production", "v1-rc1")
    await outbox.drain()
    first_run = max(fake_github.runs)

    second = await github_api.deploy("production", "v2-rc1")
    await outbox.drain()

    assert fake_github.runs[first_run].canceled
    assert states(fake_github, mirror_of(fake_github, first.body["id"])["id"]) == [
        "pending",
        "inactive",
    ]
    assert states(fake_github, mirror_of(fake_github, second.body["id"])["id"]) == ["pending"]
    assert not fake_github.runs[max(fake_github.runs)].canceled


async def test_a_deployment_superseded_before_its_dispatch_never_runs(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    await github_api.deploy("production", "v1-rc1")
    await github_api.deploy("production", "v1-rc1")
    await github_api.deploy("production", "v1-rc1")

    await outbox.drain()

    [run] = fake_github.runs.values()
    assert not run.canceled
    assert run.inputs["tarmac_deployment_id"] == str(
        (await github_api.deployments("production")).body[0]["id"]
    )


async def test_cancel_by_id_cancels_the_run_and_marks_the_deployment_inactive(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    deployed = await github_api.deploy("production", "v1-rc1")
    await outbox.drain()
    [run_id] = fake_github.runs

    canceled = await github_api.post(
        f"/api/releases/Backend/environments/production/deployments/{deployed.body['id']}/cancel"
    )
    await outbox.drain()

    assert canceled.body["status"] == "canceled"
    assert fake_github.runs[run_id].canceled
    assert states(fake_github, mirror_of(fake_github, deployed.body["id"])["id"]) == [
        "pending",
        "inactive",
    ]


async def test_an_item_of_an_action_this_version_does_not_know_fails_once_and_loudly(
    github_api: Api,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Any,
    clock: TestClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sqlalchemy import select

    from bot.storage.models import OutboxItem
    from bot.storage.outbox import OutboxState

    async with db.write() as session:
        session.add(
            OutboxItem(
                ordering_key="later:1",
                action="written_by_a_newer_version",
                repo="acme/backend",
                payload={},
                state=OutboxState.PENDING,
                attempts=0,
                uncertain=False,
                next_attempt_at=clock(),
                created_at=clock(),
            )
        )

    await outbox.drain()
    clock.advance(hours=1)
    await outbox.drain()

    async with db.read() as session:
        item = await session.scalar(select(OutboxItem).where(OutboxItem.ordering_key == "later:1"))
    assert item is not None
    assert (item.state, item.attempts) == (OutboxState.FAILED, 1)
    assert "'written_by_a_newer_version'" in (item.last_error or "")
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert ["written_by_a_newer_version" in r.getMessage() for r in errors] == [True]
    assert fake_github.calls == []
