"""Workflow dispatches whose answer was lost (issue 12, class 11): the run the dispatch may have
started is looked for in the workflow's runs list and recognised by the mark its run-name
carries (docs/workflows/), so a lost answer costs seconds, and the dispatch goes out again
only when GitHub started no run. The clock is the test's: each step drains the outbox and
moves it one second."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.github.outbound.worker import LOST_DISPATCH_GRACE_LEASES, OutboxWorker
from bot.github.outbound.workflows import LOOKUP_WINDOW
from bot.github.run_marks import build_mark, deployment_mark, run_mark
from bot.storage.db import Database
from bot.storage.models import Deployment, OutboxItem
from bot.storage.outbox import DEFAULT_LEASE
from tests.conftest import SHA_A, SHA_B, Api, TestClock
from tests.fake_github import FakeGitHub, Run, render_run_name, sample_workflow

DISPATCHES = r"/dispatches$"
RUNS_LIST = r"/workflows/deploy\.yml/runs$"
WINDOW_SECONDS = LOOKUP_WINDOW.total_seconds()
GRACE_SECONDS = LOST_DISPATCH_GRACE_LEASES * DEFAULT_LEASE.total_seconds()


async def step_until(
    outbox: OutboxWorker,
    clock: TestClock,
    done: Callable[[], Awaitable[bool]],
    limit: float = 300,
    step: float = 1,
) -> float:
    """Drain, move the clock `step` seconds, drain again, until `done`: the seconds it took."""
    waited = 0.0
    while True:
        await outbox.drain()
        if await done():
            return waited
        assert waited < limit, "never done"
        clock.advance(seconds=step)
        waited += step


def condition(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def done() -> bool:
        return check()

    return done


async def run_bound(db: Database, deployment_id: int) -> tuple[int | None, str | None]:
    async with db.read() as session:
        deployment = await session.get(Deployment, deployment_id)
        assert deployment is not None
        return deployment.workflow_run_id, deployment.workflow_run_url


def bound(db: Database, deployment_id: int) -> Callable[[], Awaitable[bool]]:
    async def done() -> bool:
        return (await run_bound(db, deployment_id))[0] is not None

    return done


async def outbox_settled(db: Database) -> bool:
    async with db.read() as session:
        states = await session.scalars(select(OutboxItem.state))
        return all(state != "pending" for state in states)


def dispatches(fake: FakeGitHub) -> int:
    return len(fake.calls_to("POST", DISPATCHES))


def run_url_of(run: Run) -> str:
    return f"https://github.com/{run.repo}/actions/runs/{run.id}"


async def deploy(github_api: Api, environment: str = "production", commit: str = SHA_A) -> int:
    await github_api.create_rc("v1-rc1", commit)
    deployed = await github_api.deploy(environment, "v1-rc1")
    return int(deployed.body["id"])


async def quiet_for(outbox: OutboxWorker, clock: TestClock, seconds: int) -> None:
    """Let `seconds` pass a second at a time, delivering whatever falls due."""
    for _ in range(seconds):
        clock.advance(seconds=1)
        await outbox.drain()


def test_the_sample_workflows_run_names_carry_the_marks_tarmac_looks_for() -> None:
    deploy_inputs = {
        "tarmac_deployment_id": "42",
        "tarmac_environment": "production",
        "tarmac_release_candidate_version": "v1.4.0-rc2",
    }
    deploy_title = render_run_name(sample_workflow("deploy.yml")["run-name"], deploy_inputs)
    build_inputs = {"tarmac_release_candidate_version": "v1.4.0-rc2"}
    build_title = render_run_name(sample_workflow("build.yml")["run-name"], build_inputs)

    assert deploy_title == "Deploy v1.4.0-rc2 to production (Tarmac deployment 42)"
    assert run_mark(deploy_title) == deployment_mark(42)
    assert run_mark(build_title) == build_mark("v1.4.0-rc2")
    assert run_mark("Build (Tarmac build v1-rc1)") == build_mark("v1-rc1")
    assert run_mark("Tarmac deployment 420") != deployment_mark(42)
    assert run_mark("deploy") is None


@pytest.mark.both_databases
async def test_a_dispatch_answered_502_after_its_run_started_binds_that_run_and_is_not_sent_again(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database, clock: TestClock
) -> None:
    deployment_id = await deploy(github_api)
    fake_github.fail(DISPATCHES, method="POST", status=502, act_first=True)

    took = await step_until(outbox, clock, condition(lambda: any(fake_github.statuses.values())))

    [run] = fake_github.runs.values()
    assert run.inputs["tarmac_deployment_id"] == str(deployment_id)
    assert dispatches(fake_github) == 1
    assert await run_bound(db, deployment_id) == (run.id, run_url_of(run))
    assert took <= 2  # the first look finds it
    # Its pending status waited for the run: it goes out with the run's log.
    [[pending]] = [s for s in fake_github.statuses.values() if s]
    assert (pending["state"], pending["log_url"]) == ("pending", run_url_of(run))
    [look] = fake_github.calls_to("GET", RUNS_LIST)
    assert look.query["event"] == "workflow_dispatch"
    assert look.query["created"].startswith(">=")
    assert await outbox_settled(db)


@pytest.mark.both_databases
@pytest.mark.parametrize(
    "look_fault",
    [None, {"status": 502, "times": 3}, {"status": 429, "headers": {"Retry-After": "8"}}],
    ids=["looks-answered", "a-look-answered-502", "a-look-rate-limited"],
)
async def test_a_lost_dispatch_that_started_no_run_is_sent_again_once_the_window_has_passed(
    look_fault: dict[str, Any] | None,
    github_api: Api,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
    clock: TestClock,
) -> None:
    deployment_id = await deploy(github_api)
    fake_github.fail(DISPATCHES, method="POST", drop_connection=True)  # never carried out
    if look_fault is not None:  # a look that fails changes nothing but its own time
        fake_github.fail(RUNS_LIST, method="GET", **look_fault)

    took = await step_until(outbox, clock, condition(lambda: dispatches(fake_github) == 2))
    await quiet_for(outbox, clock, int(WINDOW_SECONDS) * 2)

    [run] = fake_github.runs.values()
    assert await run_bound(db, deployment_id) == (run.id, run_url_of(run))
    # Not before the window has passed, and not much after.
    assert WINDOW_SECONDS <= took <= WINDOW_SECONDS + 1
    assert len(fake_github.calls_to("GET", RUNS_LIST)) >= 3
    assert dispatches(fake_github) == 2
    assert await outbox_settled(db)


@pytest.mark.both_databases
@pytest.mark.parametrize(
    ("lag", "act_after"),
    [(10, None), (3, 8)],
    ids=["listed-10s-late", "made-8s-late-listed-3s-after"],
)
async def test_a_run_the_list_shows_late_is_still_found_and_dispatched_once(
    lag: float,
    act_after: float | None,
    github_api: Api,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
    clock: TestClock,
) -> None:
    deployment_id = await deploy(github_api)
    fake_github.list_lag = lag
    if act_after is None:
        fake_github.fail(DISPATCHES, method="POST", status=502, act_first=True)
    else:
        fake_github.fail(DISPATCHES, method="POST", status=502, act_after=act_after)

    took = await step_until(outbox, clock, bound(db, deployment_id))
    await quiet_for(outbox, clock, int(WINDOW_SECONDS) * 2)  # nothing more goes out

    [run] = fake_github.runs.values()
    assert dispatches(fake_github) == 1
    assert await run_bound(db, deployment_id) == (run.id, run_url_of(run))
    assert took <= WINDOW_SECONDS
    assert len(fake_github.calls_to("GET", RUNS_LIST)) >= 2  # looked, and looked again
    assert await outbox_settled(db)


@pytest.mark.both_databases
async def test_a_lost_run_on_the_second_page_of_runs_is_found(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database, clock: TestClock
) -> None:
    deployment_id = await deploy(github_api)
    fake_github.fail(DISPATCHES, method="POST", status=502, act_first=True)
    await outbox.drain()
    [own] = fake_github.runs.values()
    # 150 newer runs of other deployments (another Tarmac's, say) come first in the list.
    for n in range(150):
        fake_github.runs[5000 + n] = Run(
            id=5000 + n,
            repo="acme/backend",
            workflow="deploy.yml",
            ref="main",
            inputs={},
            title=f"Deploy v9-rc1 to staging (Tarmac deployment {90_000 + n})",
            created_at=clock() + timedelta(seconds=1),
        )
    clock.advance(seconds=1)

    await outbox.drain()

    assert await run_bound(db, deployment_id) == (own.id, run_url_of(own))
    assert [c.query.get("page") for c in fake_github.calls_to("GET", RUNS_LIST)] == [None, "2"]
    assert dispatches(fake_github) == 1


@pytest.mark.both_databases
async def test_a_workflow_whose_run_name_carries_no_id_waits_the_grace_for_its_run(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database, clock: TestClock
) -> None:
    """A workflow that predates the mark: its runs cannot be told apart, so the lost
    dispatch waits for its run's workflow_run event as before, and is sent again after the
    grace if none came."""
    fake_github.run_names["deploy.yml"] = None  # titled "deploy", as GitHub does without one
    deployment_id = await deploy(github_api)
    fake_github.fail(DISPATCHES, method="POST", status=502, act_first=True)

    took = await step_until(outbox, clock, condition(lambda: dispatches(fake_github) == 2))

    assert (await run_bound(db, deployment_id))[0] == max(fake_github.runs)
    assert GRACE_SECONDS <= took <= GRACE_SECONDS + 2
    assert len(fake_github.runs) == 2  # the documented cost of a run-name without the mark


@pytest.mark.both_databases
async def test_a_workflow_without_the_mark_and_no_run_is_sent_again_within_the_window(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub, clock: TestClock
) -> None:
    """No run at all is an answer too: had the dispatch started one, it would be listed."""
    fake_github.run_names["deploy.yml"] = None
    await deploy(github_api)
    fake_github.fail(DISPATCHES, method="POST", drop_connection=True)

    took = await step_until(outbox, clock, condition(lambda: dispatches(fake_github) == 2))

    assert took <= WINDOW_SECONDS + 1
    assert len(fake_github.runs) == 1


@pytest.mark.both_databases
async def test_without_actions_read_a_lost_dispatch_waits_the_grace_and_says_so_once(
    github_api: Api,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    clock: TestClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    await github_api.create_rc("v2-rc1", SHA_B)
    await github_api.deploy("production", "v1-rc1")
    await github_api.deploy("staging", "v2-rc1")
    fake_github.fail(DISPATCHES, method="POST", status=502, act_first=True, times=2)
    refused = fake_github.fail(RUNS_LIST, method="GET", status=403, times=100)
    caplog.set_level(logging.WARNING, logger="bot.github.outbound.workflows")

    took = await step_until(outbox, clock, condition(lambda: dispatches(fake_github) == 4))

    assert GRACE_SECONDS <= took <= GRACE_SECONDS + 2
    assert refused.times == 98  # one look each, then the grace
    said = [r.getMessage() for r in caplog.records if "cannot list the workflow runs" in r.message]
    assert len(said) == 1
    assert "actions: read" in said[0]
