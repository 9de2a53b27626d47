"""Build and deploy runs: the build workflow Tarmac dispatches for a tagged RC, and GitHub's
`workflow_run` examples, re-addressed to the runs the fake GitHub played, finishing builds
(ready, auto-deploy) and moving deployments (statuses mirrored on GitHub with the run's log)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text, update

from bot.app.operations import Mirror
from bot.app.timeouts import sweep_stuck_builds
from bot.github.outbound.worker import OutboxWorker
from bot.storage.db import Database
from bot.storage.models import Deployment, ReleaseCandidate
from tests.conftest import (
    PROJECTS_YAML,
    SHA_A,
    SHA_B,
    SHA_C,
    Api,
    TestClock,
    Webhooks,
    github_payload,
)
from tests.fake_github import FakeGitHub, Run
from tests.test_github_tags import (
    BUILD_INPUTS,
    TAGS_PROJECTS_YAML,
    accepted,
    candidates,
    ignored,
    readdress,
    tag_push,
)

STAGING_URL = "https://staging.example.com"
RUN_STATUS = {"requested": "queued", "in_progress": "in_progress", "completed": "completed"}


@pytest.fixture
def projects_file(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The tags tests' projects file, or another one a test names (indirect parametrize)."""
    path = tmp_path / "tarmac.yml"
    path.write_text(getattr(request, "param", TAGS_PROJECTS_YAML))
    return path


# Backend's build and staging with as many inputs as the projects file allows (with Tarmac's
# own, GitHub's 25 in a dispatch; tests/test_projects_file.py has one more refused).
def _inputs(count: int) -> str:
    return "{" + ", ".join(f"in{i:02}: {i}" for i in range(count)) + "}"


MOST_INPUTS_YAML = PROJECTS_YAML.replace(
    "      workflow: build.yml\n", f"      workflow: build.yml\n      inputs: {_inputs(23)}\n"
).replace(
    "        auto_deploy: true\n", f"        auto_deploy: true\n        inputs: {_inputs(21)}\n"
)


def run_url(run_id: int, repo: str = "acme/backend") -> str:
    return f"https://github.com/{repo}/actions/runs/{run_id}"


def run_event(
    action: str, run: Run, conclusion: str | None = None, *, workflow: str | None = None
) -> dict[str, Any]:
    """GitHub's `workflow_run` example for `action`, describing `run` as the fake plays it."""
    payload = readdress(
        github_payload("workflow_run", "completed" if action == "completed" else "requested"),
        "acme/backend",
    )
    payload["action"] = action
    path = f".github/workflows/{workflow or run.workflow}"
    payload["workflow"]["path"] = path
    workflow_run = payload["workflow_run"]
    workflow_run.update(
        id=run.id,
        display_title=run.title or (workflow or run.workflow),
        path=path,
        head_sha=run.head_sha,
        head_branch=run.ref,
        html_url=run_url(run.id),
        status=RUN_STATUS[action],
        conclusion=conclusion if action == "completed" else None,
    )
    for key in ("repository", "head_repository"):
        workflow_run[key]["full_name"] = "acme/backend"
        workflow_run[key]["name"] = "backend"
    run.status = RUN_STATUS[action]
    run.conclusion = workflow_run["conclusion"]
    return payload


def foreign_run(run_id: int, workflow: str, head_sha: str, ref: str = "main") -> Run:
    """A run Tarmac did not dispatch (or whose dispatch answer it never got)."""
    return Run(
        id=run_id, repo="acme/backend", workflow=workflow, ref=ref, inputs={}, head_sha=head_sha
    )


async def tagged_rc(
    webhook: Webhooks, outbox: OutboxWorker, fake: FakeGitHub, version: str, commit: str
) -> Run:
    """Push tag `version` at `commit` and deliver the build dispatch: the build run."""
    before = set(fake.runs)
    await accepted(webhook, "push", tag_push(version, commit))
    await outbox.drain()
    [run_id] = set(fake.runs) - before
    run = fake.runs[run_id]
    run.head_sha = commit  # dispatched on the tag: the run is at the tag's commit
    return run


async def deployments_of(api: Api, environment: str) -> list[dict[str, Any]]:
    reply = await api.deployments(environment)
    assert reply.status == 200, reply.body
    return list(reply.body)


def github_deployment(fake: FakeGitHub, deployment_id: int) -> dict[str, Any]:
    [found] = [
        d
        for d in fake.deployments.get("acme/backend", [])
        if d["payload"]["tarmac_deployment_id"] == deployment_id
    ]
    return found


def github_statuses(fake: FakeGitHub, deployment_id: int) -> list[dict[str, Any]]:
    return fake.statuses[github_deployment(fake, deployment_id)["id"]]


def deploy_run_of(fake: FakeGitHub, deployment_id: int) -> Run:
    [run] = [
        r
        for r in fake.runs.values()
        if r.workflow == "deploy.yml" and r.inputs["tarmac_deployment_id"] == str(deployment_id)
    ]
    return run


# --- the whole story --------------------------------------------------------------------


@pytest.mark.both_databases
async def test_a_tag_is_built_auto_deployed_to_staging_and_its_run_shown_on_github(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    # A developer pushes a tag: an RC that builds once, on the tag.
    build = await tagged_rc(webhook, outbox, fake_github, "v1.2.0-rc1", SHA_A)
    assert (build.workflow, build.ref) == ("build.yml", "v1.2.0-rc1")
    assert build.inputs == {
        **BUILD_INPUTS,
        "tarmac_release_candidate_version": "v1.2.0-rc1",
        "tarmac_commit_sha": SHA_A,
    }

    # The build runs...
    for action in ("requested", "in_progress"):
        outcome = await accepted(webhook, "workflow_run", run_event(action, build))
        assert outcome == f"release candidate v1.2.0-rc1: build run {build.id} {action}"
    rc = await github_api.get("/api/releases/Backend/releases/v1.2.0-rc1")
    assert rc.body["build_status"] == "building"
    # ... and succeeds: the RC is ready and goes to staging (auto_deploy), not production.
    outcome = await accepted(webhook, "workflow_run", run_event("completed", build, "success"))
    assert outcome == "release candidate v1.2.0-rc1 ready; auto-deployed to staging"
    rc = await github_api.get("/api/releases/Backend/releases/v1.2.0-rc1")
    assert rc.body["build_status"] == "ready"
    [deployment] = rc.body["deployments"]
    assert (deployment["environment_name"], deployment["status"]) == ("staging", "pending")
    assert deployment["actor"] == "tarmac (auto-deploy)"
    assert await deployments_of(github_api, "production") == []
    [candidate] = await candidates(db)
    assert candidate.build_run_url == run_url(build.id)

    # The deployment appears on GitHub and its workflow runs, on the tag.
    await outbox.drain()
    mirrored = github_deployment(fake_github, deployment["id"])
    assert (mirrored["sha"], mirrored["environment"]) == (SHA_A, "staging")
    run = deploy_run_of(fake_github, deployment["id"])
    assert run.ref == "v1.2.0-rc1"
    assert run.inputs == {
        "tarmac_deployment_id": str(deployment["id"]),
        "tarmac_environment": "staging",
        "tarmac_release_candidate_version": "v1.2.0-rc1",
        "tarmac_commit_sha": SHA_A,
    }
    run.head_sha = SHA_A

    # The deploy run moves; each step is a deployment status on GitHub with the run's log.
    await accepted(webhook, "workflow_run", run_event("requested", run))
    await accepted(webhook, "workflow_run", run_event("in_progress", run))
    [now] = await deployments_of(github_api, "staging")
    assert now["status"] == "in_progress"
    await accepted(webhook, "workflow_run", run_event("completed", run, "success"))
    await outbox.drain()

    [done] = await deployments_of(github_api, "staging")
    assert done["status"] == "success"
    assert done["deploy_end_at"] is not None
    statuses = github_statuses(fake_github, deployment["id"])
    assert [s["state"] for s in statuses] == ["pending", "in_progress", "success"]
    assert [s.get("log_url") for s in statuses[1:]] == [run_url(run.id)] * 2
    assert {s["environment_url"] for s in statuses} == {STAGING_URL}
    assert all(len(s["description"]) <= 140 for s in statuses)
    environments = (await github_api.get("/api/releases/Backend/environments")).body
    staging = next(e for e in environments if e["name"] == "staging")
    assert staging["running_release_candidate_version"] == "v1.2.0-rc1"
    assert len([r for r in fake_github.runs.values() if r.workflow == "build.yml"]) == 1


# --- builds -----------------------------------------------------------------------------


@pytest.mark.parametrize("conclusion", ["failure", "cancelled", "timed_out", "startup_failure"])
async def test_a_build_that_does_not_succeed_fails_the_rc_and_deploys_nothing(
    conclusion: str,
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
) -> None:
    build = await tagged_rc(webhook, outbox, fake_github, "v1-rc1", SHA_A)

    outcome = await accepted(webhook, "workflow_run", run_event("completed", build, conclusion))
    await outbox.drain()

    assert outcome == f"release candidate v1-rc1: build {conclusion}; failed"
    rc = await github_api.get("/api/releases/Backend/releases/v1-rc1")
    assert (rc.body["build_status"], rc.body["deployments"]) == ("failed", [])
    assert rc.body["build_error"] == "The build workflow run did not succeed"
    refused = await github_api.deploy("staging", "v1-rc1")
    assert (refused.status, refused.body) == (400, {"error": "Release candidate build failed"})
    assert fake_github.deployments == {}
    # A late success of the same run changes nothing.
    late = await accepted(webhook, "workflow_run", run_event("completed", build, "success"))
    assert late == "release candidate v1-rc1 already failed"


async def test_a_frozen_environment_is_not_auto_deployed(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    frozen = await github_api.put(
        "/api/releases/Backend/environments/staging/freeze", {"reason": "demo"}
    )
    assert frozen.status == 200, frozen.body
    build = await tagged_rc(webhook, outbox, fake_github, "v1-rc1", SHA_A)

    outcome = await accepted(webhook, "workflow_run", run_event("completed", build, "success"))

    assert outcome == "release candidate v1-rc1 ready; not auto-deployed"
    assert await deployments_of(github_api, "staging") == []


async def test_a_rollback_pauses_auto_deploy_until_someone_deploys_explicitly(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.ship("staging", "v1-rc1", SHA_A)
    await github_api.ship("staging", "v2-rc1", SHA_B)
    rolled = await github_api.rollback("staging")
    assert rolled.status == 201, rolled.body
    await github_api.report("staging", "v1-rc1", "success")

    build = await tagged_rc(webhook, outbox, fake_github, "v3-rc1", SHA_C)
    outcome = await accepted(webhook, "workflow_run", run_event("completed", build, "success"))
    assert outcome == "release candidate v3-rc1 ready; not auto-deployed"
    [newest, *_] = await deployments_of(github_api, "staging")
    assert (newest["kind"], newest["release_candidate_version"]) == ("rollback", "v1-rc1")

    # Someone deploys on purpose: auto-deploy takes over again from the next build.
    deployed = await github_api.deploy("staging", "v3-rc1")
    assert deployed.status == 201, deployed.body
    await github_api.report("staging", "v3-rc1", "success")
    build = await tagged_rc(webhook, outbox, fake_github, "v4-rc1", SHA_A)
    outcome = await accepted(webhook, "workflow_run", run_event("completed", build, "success"))

    assert outcome == "release candidate v4-rc1 ready; auto-deployed to staging"
    [newest, *_] = await deployments_of(github_api, "staging")
    assert (newest["release_candidate_version"], newest["actor"]) == (
        "v4-rc1",
        "tarmac (auto-deploy)",
    )


async def test_an_api_rc_with_a_build_is_built_on_the_default_branch(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    created = await github_api.create_rc("v1-rc1", SHA_A, trigger_build_workflow=True)
    assert created.body["build_status"] == "building"

    await outbox.drain()

    [build] = fake_github.runs.values()
    assert (build.workflow, build.ref) == ("build.yml", "main")
    assert build.inputs["tarmac_commit_sha"] == SHA_A
    [candidate] = await candidates(db)
    assert (candidate.tag, candidate.build_run_id) == (None, build.id)
    build.head_sha = SHA_C  # the branch moved on: matched by run id all the same
    await accepted(webhook, "workflow_run", run_event("completed", build, "success"))
    rc = await github_api.get("/api/releases/Backend/releases/v1-rc1")
    assert rc.body["build_status"] == "ready"


@pytest.mark.parametrize("projects_file", [MOST_INPUTS_YAML], indirect=True)
async def test_every_input_the_projects_file_allows_reaches_the_dispatch(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    build = await tagged_rc(webhook, outbox, fake_github, "v1-rc1", SHA_A)
    assert build.inputs == {
        **{f"in{i:02}": str(i) for i in range(23)},
        "tarmac_release_candidate_version": "v1-rc1",
        "tarmac_commit_sha": SHA_A,
    }

    await accepted(webhook, "workflow_run", run_event("completed", build, "success"))
    await outbox.drain()
    [deployment] = await deployments_of(github_api, "staging")
    deploy = deploy_run_of(fake_github, deployment["id"])
    assert deploy.inputs == {
        **{f"in{i:02}": str(i) for i in range(21)},
        "tarmac_deployment_id": str(deployment["id"]),
        "tarmac_environment": "staging",
        "tarmac_release_candidate_version": "v1-rc1",
        "tarmac_commit_sha": SHA_A,
    }
    assert len(build.inputs) == len(deploy.inputs) == 25


async def test_a_build_workflow_github_refuses_fails_the_rc(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    fake_github.fail(r"/workflows/build\.yml/dispatches$", status=404)
    await accepted(webhook, "push", tag_push("v1-rc1", SHA_A))

    await outbox.drain()

    rc = await github_api.get("/api/releases/Backend/releases/v1-rc1")
    assert rc.body["build_status"] == "failed"
    assert rc.body["build_error"].startswith("Build workflow could not be started: ")
    assert fake_github.runs == {}


# Backend's build may take 20 minutes.
BUILD_TIMEOUT_YAML = TAGS_PROJECTS_YAML.replace(
    "      workflow: build.yml\n", "      workflow: build.yml\n      timeout_minutes: 20\n"
)


@pytest.mark.both_databases
@pytest.mark.parametrize("projects_file", [BUILD_TIMEOUT_YAML], indirect=True)
async def test_a_build_whose_run_never_completes_fails_after_the_projects_timeout(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
    clock: TestClock,
) -> None:
    build = await tagged_rc(webhook, outbox, fake_github, "v1-rc1", SHA_A)
    await accepted(webhook, "workflow_run", run_event("in_progress", build))
    mirror = Mirror(enabled=True)

    clock.advance(minutes=20)
    assert await sweep_stuck_builds(db, clock, mirror) == 0
    clock.advance(seconds=1)
    assert await sweep_stuck_builds(db, clock, mirror) == 1

    rc = await github_api.get("/api/releases/Backend/releases/v1-rc1")
    assert (rc.body["build_status"], rc.body["build_error"]) == (
        "failed",
        "Build timed out: no result after 20 minutes",
    )
    assert rc.body["deployments"] == []  # staging auto-deploys ready RCs only
    refused = await github_api.deploy("staging", "v1-rc1")
    assert (refused.status, refused.body) == (400, {"error": "Release candidate build failed"})

    # The run completing after all changes nothing: a timed-out build stays failed.
    outcome = await accepted(webhook, "workflow_run", run_event("completed", build, "success"))
    assert outcome == "release candidate v1-rc1 already failed"
    await outbox.drain()
    rc = await github_api.get("/api/releases/Backend/releases/v1-rc1")
    assert (rc.body["build_status"], rc.body["deployments"]) == ("failed", [])
    assert [r.workflow for r in fake_github.runs.values()] == ["build.yml"]


# The build workflow's run-name before the samples carried Tarmac's mark in it.
UNMARKED_BUILD_RUN_NAME = "Build ${{ inputs.tarmac_release_candidate_version }}"


async def lose_dispatch_answers(
    fake: FakeGitHub, outbox: OutboxWorker, clock: TestClock, times: int = 1
) -> None:
    """Dispatches reach GitHub but their answers never come back; a second later the outbox
    looks for their runs (tests/test_github_lost_dispatches.py has the rest of that story)."""
    fake.fail(r"/dispatches$", method="POST", drop_after_processing=True, times=times)
    await outbox.drain()
    clock.advance(seconds=1)
    await outbox.drain()


@pytest.mark.both_databases
async def test_a_build_run_whose_dispatch_answer_was_lost_is_found_by_its_mark_and_kept(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
    clock: TestClock,
) -> None:
    await accepted(webhook, "push", tag_push("v1-rc1", SHA_A))
    await lose_dispatch_answers(fake_github, outbox, clock)

    [build] = fake_github.runs.values()  # GitHub started it; Tarmac never heard back
    assert build.title == "Tarmac build v1-rc1"
    [candidate] = await candidates(db)
    assert (candidate.build_run_id, candidate.build_run_url) == (build.id, run_url(build.id))
    build.head_sha = SHA_A
    outcome = await accepted(webhook, "workflow_run", run_event("in_progress", build))
    assert outcome == f"release candidate v1-rc1: build run {build.id} in_progress"
    clock.advance(minutes=5)
    await outbox.drain()
    assert len(fake_github.calls_to("POST", r"/dispatches$")) == 1
    outcome = await accepted(webhook, "workflow_run", run_event("completed", build, "success"))
    assert outcome == "release candidate v1-rc1 ready; auto-deployed to staging"


async def _lock_waiters(db: Database) -> int:
    async with db.read() as session:
        count = await session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
        )
        return int(count or 0)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_build_completed_while_its_dispatch_answer_is_being_recorded_is_finished(
    webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    """The run's `completed` arrives while the worker's transaction recording the dispatch's
    answer (the run id) holds the RC's row: the look-up for an unrecorded build waits for it,
    then no longer finds the RC missing its run. It is the build by run id then, not nothing
    (the latency bench lost an auto-deploy to this on PostgreSQL)."""
    build = await tagged_rc(webhook, outbox, fake_github, "v1-rc1", SHA_A)
    [candidate] = await candidates(db)
    async with db.write() as session:  # dispatched, its answer not recorded yet
        await session.execute(
            update(ReleaseCandidate)
            .where(ReleaseCandidate.id == candidate.id)
            .values(build_run_id=None)
        )

    async with db.write() as recording:
        await recording.execute(
            update(ReleaseCandidate)
            .where(ReleaseCandidate.id == candidate.id)
            .values(build_run_id=build.id)
        )
        completed = asyncio.create_task(
            accepted(webhook, "workflow_run", run_event("completed", build, "success"))
        )
        async with asyncio.timeout(10):
            while await _lock_waiters(db) == 0:
                assert not completed.done(), completed.result()
                await asyncio.sleep(0.005)
    outcome = await asyncio.wait_for(completed, 10)

    assert outcome == "release candidate v1-rc1 ready; auto-deployed to staging"


@pytest.mark.both_databases
async def test_a_build_run_without_the_mark_whose_answer_was_lost_is_attached_by_its_event(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
    clock: TestClock,
) -> None:
    """A build workflow whose run-name predates the mark: the lost dispatch waits for its
    run's workflow_run event, which attaches the run by workflow and commit."""
    fake_github.run_names["build.yml"] = UNMARKED_BUILD_RUN_NAME
    await accepted(webhook, "push", tag_push("v1-rc1", SHA_A))
    await lose_dispatch_answers(fake_github, outbox, clock)
    [build] = fake_github.runs.values()
    [candidate] = await candidates(db)
    assert candidate.build_run_id is None
    build.head_sha = SHA_A

    outcome = await accepted(webhook, "workflow_run", run_event("in_progress", build))
    clock.advance(minutes=5)
    await outbox.drain()

    assert outcome == f"release candidate v1-rc1: build run {build.id} in_progress"
    [candidate] = await candidates(db)
    assert (candidate.build_run_id, candidate.build_run_url) == (build.id, run_url(build.id))
    assert len(fake_github.calls_to("POST", r"/dispatches$")) == 1


@pytest.mark.both_databases
async def test_a_lost_build_dispatch_that_started_no_run_is_sent_again(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
    clock: TestClock,
) -> None:
    await accepted(webhook, "push", tag_push("v1-rc1", SHA_A))
    fake_github.fail(r"/dispatches$", method="POST", drop_connection=True)
    for _ in range(20):  # the lookup's 15 s window, a second at a time
        await outbox.drain()
        clock.advance(seconds=1)

    assert len(fake_github.calls_to("POST", r"/dispatches$")) == 2
    [build] = fake_github.runs.values()
    [candidate] = await candidates(db)
    assert candidate.build_run_id == build.id


MONOREPO_BUILDS_YAML = (
    PROJECTS_YAML
    + """
  - name: Api
    repo: acme/monorepo
    tag_prefix: api-
    build:
      workflow: build.yml
    environments:
      - name: production
  - name: Web
    repo: acme/monorepo
    tag_prefix: web-
    build:
      workflow: build.yml
    environments:
      - name: production
"""
)


@pytest.mark.parametrize("projects_file", [MONOREPO_BUILDS_YAML], indirect=True)
async def test_two_projects_builds_of_one_version_are_not_told_apart_by_the_mark(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
    clock: TestClock,
) -> None:
    """Both runs would be titled `Tarmac build v1-rc1`: each lost dispatch waits for its own
    run's event (which tells them apart by commit), neither takes the other's run."""
    for prefix, commit in (("api-", SHA_A), ("web-", SHA_B)):
        await accepted(webhook, "push", tag_push(f"{prefix}v1-rc1", commit, repo="acme/monorepo"))
    await lose_dispatch_answers(fake_github, outbox, clock, times=2)
    api_run, web_run = sorted(fake_github.runs.values(), key=lambda run: run.ref)
    api_run.head_sha, web_run.head_sha = SHA_A, SHA_B
    assert (await candidates(db, "Api"))[0].build_run_id is None
    assert (await candidates(db, "Web"))[0].build_run_id is None

    for run in (web_run, api_run):
        payload = readdress(run_event("in_progress", run), "acme/monorepo")
        await accepted(webhook, "workflow_run", payload)
    clock.advance(minutes=5)
    await outbox.drain()

    assert (await candidates(db, "Api"))[0].build_run_id == api_run.id
    assert (await candidates(db, "Web"))[0].build_run_id == web_run.id
    assert len(fake_github.calls_to("POST", r"/dispatches$")) == 2


# --- deploy runs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("conclusion", "status", "state"),
    [
        ("success", "success", "success"),
        ("failure", "failure", "failure"),
        ("timed_out", "failure", "failure"),
        ("cancelled", "canceled", "inactive"),
        ("action_required", "error", "error"),
    ],
)
async def test_a_deploy_run_moves_its_deployment_and_github_shows_each_step(
    conclusion: str,
    status: str,
    state: str,
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    deployed = await github_api.deploy("production", "v1-rc1")
    await outbox.drain()
    run = deploy_run_of(fake_github, deployed.body["id"])

    requested = await accepted(webhook, "workflow_run", run_event("requested", run))
    again = await accepted(webhook, "workflow_run", run_event("in_progress", run))
    completed = await accepted(webhook, "workflow_run", run_event("completed", run, conclusion))
    await outbox.drain()

    name = f"deployment {deployed.body['id']}"
    assert requested == f"{name} in_progress (run {run.id} requested)"
    assert again == f"{name} stays in_progress (run {run.id} in_progress)"
    assert completed == f"{name} {status} (run {run.id} completed)"
    [deployment] = await deployments_of(github_api, "production")
    assert deployment["status"] == status
    statuses = github_statuses(fake_github, deployed.body["id"])
    assert [s["state"] for s in statuses] == ["pending", "in_progress", state]
    assert [s.get("log_url") for s in statuses] == [run_url(run.id)] * 3


async def test_a_completed_run_delivered_before_its_in_progress_stays_completed(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    deployed = await github_api.deploy("production", "v1-rc1")
    await outbox.drain()
    run = deploy_run_of(fake_github, deployed.body["id"])
    completed = run_event("completed", run, "success")
    in_progress = run_event("in_progress", run)

    await accepted(webhook, "workflow_run", completed)
    late = await accepted(webhook, "workflow_run", in_progress)
    await outbox.drain()

    assert late == f"deployment {deployed.body['id']} stays success (run {run.id} in_progress)"
    [deployment] = await deployments_of(github_api, "production")
    assert deployment["status"] == "success"
    statuses = github_statuses(fake_github, deployed.body["id"])
    assert [s["state"] for s in statuses] == ["pending", "success"]


@pytest.mark.both_databases
async def test_a_deploy_run_tarmac_never_heard_of_is_found_by_workflow_and_commit(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    clock: TestClock,
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    await github_api.create_rc("v2-rc1", SHA_B)
    older = await github_api.deploy("production", "v1-rc1")
    deployed = await github_api.deploy("staging", "v1-rc1")
    # Both dispatches reach GitHub; their answers never come back, and the workflow's runs
    # carry no Tarmac mark to find them by (its run-name predates it).
    fake_github.run_names["deploy.yml"] = None
    await lose_dispatch_answers(fake_github, outbox, clock, times=2)
    assert len(fake_github.runs) == 2
    [staging] = await deployments_of(github_api, "staging")
    assert staging["status"] == "pending"

    # Runs of other workflows, or at other commits, are not its.
    ci = foreign_run(900_001, "ci.yml", SHA_A)
    assert "not of a Tarmac workflow" in await ignored(
        webhook, "workflow_run", run_event("in_progress", ci)
    )
    elsewhere = foreign_run(900_002, "deploy.yml", SHA_B)
    assert "no Tarmac build or deployment" in await ignored(
        webhook, "workflow_run", run_event("in_progress", elsewhere)
    )
    # A deploy.yml run at v1's commit: the newest such deployment without a run (staging).
    run = foreign_run(900_003, "deploy.yml", SHA_A)
    attached = await accepted(webhook, "workflow_run", run_event("in_progress", run))
    assert attached == f"deployment {deployed.body['id']} in_progress (run {run.id} in_progress)"
    # From now on it is known by its id; and the waiting dispatch ends without a second run.
    await accepted(webhook, "workflow_run", run_event("completed", run, "success"))
    clock.advance(minutes=5)
    await outbox.drain()

    [staging] = await deployments_of(github_api, "staging")
    assert staging["status"] == "success"
    statuses = github_statuses(fake_github, deployed.body["id"])
    # Its first status waited behind the dispatch: it goes out with the run found meanwhile.
    assert [(s["state"], s.get("log_url")) for s in statuses] == [
        ("pending", run_url(run.id)),
        ("in_progress", run_url(run.id)),
        ("success", run_url(run.id)),
    ]
    [production] = await deployments_of(github_api, "production")
    assert (production["id"], production["status"]) == (older.body["id"], "pending")
    # Production's run never showed up: dispatched again; staging's was found: not again.
    dispatched = [
        c.body["inputs"]["tarmac_environment"]
        for c in fake_github.calls_to("POST", r"/dispatches$")
    ]
    assert sorted(dispatched) == ["production", "production", "staging"]


@pytest.mark.both_databases
async def test_a_run_whose_title_names_its_deployment_is_taken_for_that_one_only(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
    clock: TestClock,
) -> None:
    """Two deployments of one RC (one commit), both dispatch answers lost: each run's event
    goes to the deployment its run-name names, not to the newest one at the commit."""
    await github_api.create_rc("v1-rc1", SHA_A)
    production = (await github_api.deploy("production", "v1-rc1")).body["id"]
    staging = (await github_api.deploy("staging", "v1-rc1")).body["id"]
    fake_github.fail(r"/dispatches$", method="POST", drop_after_processing=True, times=2)
    await outbox.drain()  # both lost; the looks are a second away
    for run in fake_github.runs.values():
        run.head_sha = SHA_A
    own = {run.inputs["tarmac_environment"]: run for run in fake_github.runs.values()}

    outcome = await accepted(webhook, "workflow_run", run_event("in_progress", own["production"]))
    stranger = foreign_run(900_020, "deploy.yml", SHA_A)
    stranger.title = f"Deploy v1-rc1 to production (Tarmac deployment {production})"
    ignored_outcome = await ignored(webhook, "workflow_run", run_event("requested", stranger))
    clock.advance(seconds=1)
    await outbox.drain()  # staging's look finds its own run

    run_id = own["production"].id
    assert outcome == f"deployment {production} in_progress (run {run_id} in_progress)"
    assert "no Tarmac build or deployment" in ignored_outcome
    async with db.read() as session:
        bound = dict(
            (await session.execute(select(Deployment.id, Deployment.workflow_run_id))).all()
        )
    assert bound == {production: own["production"].id, staging: own["staging"].id}
    assert len(fake_github.calls_to("POST", r"/dispatches$")) == 2


@pytest.mark.both_databases
async def test_a_run_is_not_taken_for_a_deployment_whose_own_dispatch_has_not_gone_out(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    deployed = await github_api.deploy("production", "v1-rc1")
    stranger = foreign_run(900_010, "deploy.yml", SHA_A)

    # Its dispatch has not gone out yet: no run can be its; its own answer will name it.
    outcome = await ignored(webhook, "workflow_run", run_event("requested", stranger))
    await outbox.drain()

    assert "no Tarmac build or deployment" in outcome
    own = deploy_run_of(fake_github, deployed.body["id"])
    own.head_sha = SHA_A
    assert "no Tarmac build or deployment" in await ignored(
        webhook, "workflow_run", run_event("completed", stranger, "failure")
    )
    await accepted(webhook, "workflow_run", run_event("completed", own, "success"))
    [deployment] = await deployments_of(github_api, "production")
    assert deployment["status"] == "success"


async def test_runs_of_other_repositories_are_ignored(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    deployed = await github_api.deploy("production", "v1-rc1")
    await outbox.drain()
    run = deploy_run_of(fake_github, deployed.body["id"])
    payload = run_event("completed", run, "success")
    readdress(payload, "acme/monorepo")

    outcome = await ignored(webhook, "workflow_run", payload)
    payload["repository"]["full_name"] = "acme/elsewhere"
    nowhere = await ignored(webhook, "workflow_run", payload)

    assert outcome == f"ignored: run {run.id} is not of a Tarmac workflow"
    assert nowhere == "ignored: no project on acme/elsewhere"
    [deployment] = await deployments_of(github_api, "production")
    assert deployment["status"] == "pending"


async def test_a_forged_conclusion_and_url_end_the_deployment_in_error_and_are_not_kept(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    deployed = await github_api.deploy("production", "v1-rc1")
    await outbox.drain()
    run = deploy_run_of(fake_github, deployed.body["id"])
    # (A NUL anywhere makes the whole delivery ignored: tests/test_properties_webhooks.py.)
    payload = run_event("completed", run, "success'; DROP TABLE deployments; --")
    payload["workflow_run"]["html_url"] = "https://github.com/\x1b[2J"

    outcome = await accepted(webhook, "workflow_run", payload)
    await outbox.drain()

    assert outcome == f"deployment {deployed.body['id']} error (run {run.id} completed)"
    statuses = github_statuses(fake_github, deployed.body["id"])
    assert [(s["state"], s.get("log_url")) for s in statuses] == [
        ("pending", run_url(run.id)),  # the dispatch's own answer
        ("error", run_url(run.id)),
    ]
