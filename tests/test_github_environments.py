"""Deploy jobs in GitHub environments (`github_deployment: workflow`): the deploy workflow's
job declares `environment:`, so GitHub Actions makes the GitHub Deployment and posts its
statuses; Tarmac makes none, adopts Actions' from its `deployment` event (GitHub's example,
re-addressed), and shows a job held by the environment's protection rules (`workflow_job`
`waiting`) as `waiting_for`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.config.projects_file import ProjectsFileError, parse_projects
from bot.github.outbound.worker import OutboxWorker
from bot.storage.db import Database
from bot.storage.models import Deployment
from tests.conftest import PROJECTS_YAML, SHA_A, SHA_B, Api, Webhooks, github_payload
from tests.fake_github import ACTIONS_LOGIN, FakeGitHub, Run, sample_workflow
from tests.test_github_tags import accepted, ignored, readdress
from tests.test_github_workflow_runs import deployments_of, run_event, run_url

WORKFLOW = "deploy-with-environment.yml"
ENVIRONMENTS_YAML = PROJECTS_YAML.replace(
    """        deploy_workflow: deploy.yml
        production: true
""",
    f"""        deploy_workflow: {WORKFLOW}
        github_deployment: workflow
        production: true
""",
)
WAITING_FOR = "approval of GitHub environment production (its protection rules)"


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(ENVIRONMENTS_YAML)
    return path


def run_of(fake: FakeGitHub, deployment_id: int) -> Run:
    [run] = [
        r for r in fake.runs.values() if r.inputs["tarmac_deployment_id"] == str(deployment_id)
    ]
    run.head_sha = SHA_A if run.inputs["tarmac_release_candidate_version"] == "v1-rc1" else SHA_B
    return run


def deployment_event(github_deployment: dict[str, Any], run: Run) -> dict[str, Any]:
    """GitHub's `deployment` example made by a workflow run (its only one with `workflow_run`),
    describing the deployment Actions made for `run`."""
    payload = readdress(github_payload("deployment", "gh-pages"), "acme/backend")
    deployment = payload["deployment"]
    deployment.update(
        id=github_deployment["id"],
        sha=github_deployment["sha"],
        ref=github_deployment["ref"],
        environment=github_deployment["environment"],
        original_environment=github_deployment["environment"],
        payload={},
    )
    deployment["creator"]["login"] = ACTIONS_LOGIN
    payload["workflow_run"].update(
        id=run.id,
        name="deploy-with-environment",
        head_sha=run.head_sha,
        head_branch=run.ref,
        html_url=run_url(run.id),
        event="workflow_dispatch",
        status="in_progress",
    )
    return payload


def job_event(action: str, run: Run, environment: str = "production") -> dict[str, Any]:
    """GitHub's `workflow_job` example for `action` of the run's job; a waiting one names its
    GitHub environment in `deployment`, as GitHub's queued example with a deployment does."""
    payload = readdress(github_payload("workflow_job", action), "acme/backend")
    if action == "waiting":
        deployment = github_payload("workflow_job", "queued.with-deployment")["deployment"]
        deployment.update(environment=environment, original_environment=environment)
        payload["deployment"] = deployment
    payload["workflow_job"].update(
        run_id=run.id, head_sha=run.head_sha, name="deploy", workflow_name="deploy-with-environment"
    )
    return payload


async def deployed_through_actions(
    api: Api, webhook: Webhooks, outbox: OutboxWorker, fake: FakeGitHub, version: str
) -> tuple[int, Run, dict[str, Any]]:
    """Deploy `version` to production; its run starts and Actions makes its GitHub Deployment,
    which Tarmac adopts. (Tarmac deployment id, run, GitHub deployment)."""
    deployed = await api.deploy("production", version)
    assert deployed.status == 201, deployed.body
    await outbox.drain()
    run = run_of(fake, deployed.body["id"])
    await accepted(webhook, "workflow_run", run_event("requested", run))
    github_deployment = fake.start_job(run)
    assert github_deployment is not None
    adopted = await accepted(webhook, "deployment", deployment_event(github_deployment, run))
    name = f"deployment {deployed.body['id']}"
    assert adopted == f"{name}: GitHub deployment {github_deployment['id']} of run {run.id}"
    return deployed.body["id"], run, github_deployment


async def finished(
    webhook: Webhooks, outbox: OutboxWorker, fake: FakeGitHub, run: Run, conclusion: str
) -> str:
    fake.finish_job(run, conclusion)
    outcome = await accepted(webhook, "workflow_run", run_event("completed", run, conclusion))
    await outbox.drain()
    return outcome


async def recorded_github_id(db: Database, deployment_id: int) -> int | None:
    async with db.read() as session:
        deployment = await session.get(Deployment, deployment_id)
        assert deployment is not None
        return deployment.github_deployment_id


@pytest.mark.both_databases
@pytest.mark.parametrize(("conclusion", "status"), [("success", "success"), ("failure", "failure")])
async def test_a_deploy_has_one_github_deployment_made_by_actions_and_tarmac_records_it(
    conclusion: str,
    status: str,
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    deployment_id, run, github_deployment = await deployed_through_actions(
        github_api, webhook, outbox, fake_github, "v1-rc1"
    )
    redelivered = await accepted(webhook, "deployment", deployment_event(github_deployment, run))
    outcome = await finished(webhook, outbox, fake_github, run, conclusion)

    assert redelivered == (
        f"deployment {deployment_id} has GitHub deployment {github_deployment['id']} already"
    )
    assert outcome == f"deployment {deployment_id} {status} (run {run.id} completed)"
    assert fake_github.calls_to("POST", r"/deployments") == []  # no deployment, no status
    assert fake_github.deployments["acme/backend"] == [github_deployment]
    assert github_deployment["environment"] == "production"
    assert await recorded_github_id(db, deployment_id) == github_deployment["id"]
    statuses = fake_github.statuses[github_deployment["id"]]
    assert {s["creator"]["login"] for s in statuses} == {ACTIONS_LOGIN}
    assert [s["state"] for s in statuses] == ["waiting", status]  # Actions' final = Tarmac's
    [deployment] = await deployments_of(github_api, "production")
    assert (deployment["status"], deployment["waiting_for"]) == (status, None)


async def test_a_rollback_likewise_makes_one_github_deployment(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    await github_api.create_rc("v1-rc2", SHA_B)
    for version in ("v1-rc1", "v1-rc2"):
        _, run, _ = await deployed_through_actions(
            github_api, webhook, outbox, fake_github, version
        )
        await finished(webhook, outbox, fake_github, run, "success")

    rolled = await github_api.rollback("production")
    assert rolled.status == 201, rolled.body
    await outbox.drain()
    run = run_of(fake_github, rolled.body["id"])
    github_deployment = fake_github.start_job(run)
    assert github_deployment is not None
    adopted = await accepted(webhook, "deployment", deployment_event(github_deployment, run))
    await finished(webhook, outbox, fake_github, run, "success")

    assert adopted.endswith(f"GitHub deployment {github_deployment['id']} of run {run.id}")
    assert fake_github.calls_to("POST", r"/deployments") == []
    assert len(fake_github.deployments["acme/backend"]) == 3  # one per Tarmac deployment
    assert await recorded_github_id(db, rolled.body["id"]) == github_deployment["id"]
    newest = (await deployments_of(github_api, "production"))[0]
    assert (newest["kind"], newest["status"]) == ("rollback", "success")


@pytest.mark.both_databases
async def test_a_job_held_by_its_github_environment_shows_what_it_waits_for_until_it_runs(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    deployment_id, run, _ = await deployed_through_actions(
        github_api, webhook, outbox, fake_github, "v1-rc1"
    )
    name = f"deployment {deployment_id}"

    waiting = await accepted(webhook, "workflow_job", job_event("waiting", run))
    again = await accepted(webhook, "workflow_job", job_event("waiting", run))
    run_moved = await accepted(webhook, "workflow_run", run_event("in_progress", run))
    [held] = await deployments_of(github_api, "production")
    running = await accepted(webhook, "workflow_job", job_event("in_progress", run))
    [moved] = await deployments_of(github_api, "production")

    assert waiting == f"{name} pending: waits for {WAITING_FOR}"
    assert again == f"{name} still waits for {WAITING_FOR}"
    assert run_moved == f"{name} stays pending (run {run.id} in_progress)"
    assert (held["status"], held["waiting_for"]) == ("pending", WAITING_FOR)
    assert running == f"{name} in_progress: its job runs"
    assert (moved["status"], moved["waiting_for"]) == ("in_progress", None)
    assert fake_github.calls_to("POST", r"/deployments") == []


async def test_a_held_deployment_that_is_canceled_no_longer_waits(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    deployment_id, run, _ = await deployed_through_actions(
        github_api, webhook, outbox, fake_github, "v1-rc1"
    )
    await accepted(webhook, "workflow_job", job_event("waiting", run))

    canceled = await github_api.post(
        f"/api/releases/Backend/environments/production/deployments/{deployment_id}/cancel"
    )
    await outbox.drain()

    assert canceled.status == 200, canceled.body
    assert canceled.body["waiting_for"] is None
    assert fake_github.calls_to("POST", r"/actions/runs/\d+/cancel") != []
    assert fake_github.calls_to("POST", r"/deployments") == []  # Actions reports the cancel


async def test_deployments_and_jobs_of_runs_tarmac_does_not_know_are_ignored(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    stranger = Run(id=987654, repo="acme/backend", workflow=WORKFLOW, ref="main", inputs={})
    stranger.inputs["tarmac_environment"] = "production"
    github_deployment = fake_github.start_job(stranger)
    assert github_deployment is not None
    staging = dict(github_deployment, environment="staging")

    unknown = await ignored(webhook, "deployment", deployment_event(github_deployment, stranger))
    tarmacs = await ignored(webhook, "deployment", deployment_event(staging, stranger))
    pages = await ignored(webhook, "deployment", github_payload("deployment", "with-installation"))
    job = await ignored(webhook, "workflow_job", job_event("waiting", stranger))

    assert unknown == "ignored: run 987654 is no Tarmac deployment's"
    assert tarmacs == "ignored: environment staging takes no GitHub deployment from runs"
    assert pages == "ignored: not a deployment of a workflow run"
    assert job == "ignored: run 987654 is no Tarmac deployment's"


async def test_staging_in_tarmac_mode_still_gets_tarmacs_own_github_deployment(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    deployed = await github_api.deploy("staging", "v1-rc1")
    await outbox.drain()

    [created] = fake_github.deployments["acme/backend"]
    assert created["payload"]["tarmac_deployment_id"] == deployed.body["id"]
    assert [s["state"] for s in fake_github.statuses[created["id"]]] == ["pending"]


def test_workflow_mode_needs_a_deploy_workflow() -> None:
    raw = {
        "projects": [
            {
                "name": "Backend",
                "repo": "acme/backend",
                "environments": [
                    {"name": "production", "github_deployment": "workflow"},
                    {"name": "qa", "github_deployment": "actions"},
                ],
            }
        ]
    }
    with pytest.raises(ProjectsFileError) as refused:
        parse_projects(raw, Path("tarmac.yml"))

    assert refused.value.problems == [
        "tarmac.yml: project 'Backend': environments[1].github_deployment: Input should be "
        "'tarmac' or 'workflow'",
        "tarmac.yml: project 'Backend': environments[0].github_deployment: 'workflow' needs a "
        "deploy_workflow (its job's `environment:` makes the GitHub deployment)",
    ]


@pytest.mark.both_databases
async def test_a_deployment_event_before_the_dispatch_answer_is_matched_by_commit(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    deployed = await github_api.deploy("production", "v1-rc1")
    fake_github.fail(r"/dispatches$", method="POST", status=502, act_first=True)
    await outbox.deliver_due()  # the run started; its answer was lost
    run = run_of(fake_github, deployed.body["id"])
    github_deployment = fake_github.start_job(run)
    assert github_deployment is not None

    adopted = await accepted(webhook, "deployment", deployment_event(github_deployment, run))
    await outbox.drain()

    assert adopted == (
        f"deployment {deployed.body['id']}: GitHub deployment {github_deployment['id']} of run "
        f"{run.id}"
    )
    assert await recorded_github_id(db, deployed.body["id"]) == github_deployment["id"]
    assert len(fake_github.calls_to("POST", r"/dispatches$")) == 1  # the run was found, kept
    assert fake_github.calls_to("POST", r"/deployments") == []


def test_the_environment_sample_is_the_deploy_sample_with_its_job_in_the_environment() -> None:
    plain, with_environment = sample_workflow("deploy.yml"), sample_workflow(WORKFLOW)
    [job] = with_environment["jobs"].values()

    assert job["environment"] == "${{ inputs.tarmac_environment }}"
    assert with_environment["run-name"] == plain["run-name"]  # the same mark
    assert with_environment[True] == plain[True]  # `on:` (YAML 1.1 reads it as true): inputs
    assert [j.get("environment") for j in plain["jobs"].values()] == [None]


async def test_a_reported_deployment_gets_tarmacs_own_github_deployment_in_workflow_mode(
    github_api: Api, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    reported = await github_api.report("production", "v1-rc1", "success")
    await outbox.drain()

    assert reported.status == 200, reported.body
    [created] = fake_github.deployments["acme/backend"]
    assert created["payload"]["tarmac_deployment_id"] == reported.body["id"]
    assert [s["state"] for s in fake_github.statuses[created["id"]]] == ["success"]
    assert fake_github.runs == {}
