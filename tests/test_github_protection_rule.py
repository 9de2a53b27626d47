"""Tarmac as a GitHub deployment protection rule: GitHub asks for every job that targets a
GitHub environment whose protection rules name the App (Tarmac's deploy runs and runs started
by hand alike), and Tarmac answers through GitHub's API as its rules say.

The pinned webhook examples have no `deployment_protection_rule` payload, so the deliveries
are made of GitHub's example `deployment` payload (its repository, installation, sender and
deployment, re-addressed) with the event's own fields as GitHub's REST description gives
them, and each is checked against that description's schema of the event before it is sent.
The fake GitHub takes the answer only as the description says (and only for a job waiting)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.keys import SERVICE
from bot.app import operations
from bot.domain.approvals import Approver
from bot.domain.policy import Door
from bot.github.outbound.worker import OutboxWorker
from bot.storage.db import Database
from bot.storage.models import AuditEvent, Deployment
from tests.conftest import SHA_A, SHA_B, Api, TestClock, Webhooks, github_payload
from tests.fake_github import FakeGitHub, Run
from tests.github_rest import github_rest
from tests.test_github_tags import accepted, readdress
from tests.test_github_workflow_runs import deployments_of, run_event

REPO = "acme/backend"
SENDER = "octocat"
WINDOW_REASON = "Quarter close: no deploys"


def projects_yaml(clock: TestClock) -> str:
    """staging; production after staging, soaked an hour; `closing`, frozen by a calendar
    window around now; `audited`, after two approvals."""
    start = (clock.now - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    end = (clock.now + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M")
    return f"""
projects:
  - name: Backend
    repo: {REPO}
    environments:
      - name: staging
        deploy_workflow: deploy.yml
      - name: production
        deploy_workflow: deploy.yml
        production: true
        requires: [staging]
        soak_minutes: 60
      - name: closing
        deploy_workflow: deploy.yml
        freezes:
          - name: quarter-close
            reason: "{WINDOW_REASON}"
            from: "{start}"
            until: "{end}"
      - name: audited
        deploy_workflow: deploy.yml
        approvals:
          required: 2
"""


@pytest.fixture
def projects_file(tmp_path: Path, clock: TestClock) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(projects_yaml(clock))
    return path


def protection_rule_event(
    run: Run, environment: str, *, sender: str = SENDER, github_deployment_id: int = 777
) -> dict[str, Any]:
    """GitHub's `deployment_protection_rule` `requested` for the run's job held at
    `environment`, checked against the REST description's schema of the event."""
    example = readdress(github_payload("deployment", "with-installation"), REPO)
    deployment = example["deployment"]
    deployment.update(
        id=github_deployment_id,
        sha=run.head_sha,
        ref=run.ref,
        environment=environment,
        original_environment=environment,
        task="deploy",
        payload={},
    )
    example["sender"]["login"] = sender
    payload = {
        "action": "requested",
        "environment": environment,
        "event": run.event,
        "sha": run.head_sha,
        "ref": run.ref,
        "deployment_callback_url": (
            f"https://api.github.com/repos/{REPO}/actions/runs/{run.id}/deployment_protection_rule"
        ),
        "deployment": deployment,
        "pull_requests": [],
        "repository": example["repository"],
        "installation": example["installation"],
        "sender": example["sender"],
    }
    problem = github_rest().webhook_problem("deployment-protection-rule-requested", payload)
    assert problem is None, problem
    return payload


async def held(
    webhook: Webhooks, fake: FakeGitHub, run: Run, environment: str, **kwargs: Any
) -> str:
    """The run's job reaches `environment` and waits for Tarmac: GitHub asks (one delivery)."""
    fake.hold_at_protection_rule(run, environment)
    return await accepted(
        webhook, "deployment_protection_rule", protection_rule_event(run, environment), **kwargs
    )


def hand_run(fake: FakeGitHub, tag: str = "v1-rc1", sha: str = SHA_A) -> Run:
    return fake.run_by_hand(REPO, "deploy.yml", f"refs/tags/{tag}", sha)


def answers(fake: FakeGitHub) -> list[tuple[str, str, str]]:
    return [(r["environment_name"], r["state"], r["comment"]) for r in fake.protection_reviews]


async def audited(db: Database) -> list[tuple[str, str, str, str | None]]:
    async with db.read() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.door == "protection_rule").order_by(AuditEvent.id)
        )
        return [(r.actor or "", r.action, r.decision, r.reason) for r in rows]


async def stored_deployment(db: Database, deployment_id: int) -> Deployment:
    async with db.read() as session:
        found = await session.get(Deployment, deployment_id)
    assert found is not None
    return found


# --- runs started by hand -------------------------------------------------------------------


async def test_a_hand_run_in_a_calendar_freeze_is_rejected_with_the_freeze_and_kept_in_history(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    run = hand_run(fake_github)

    outcome = await held(webhook, fake_github, run, "closing")
    await outbox.drain()

    [(environment, state, comment)] = answers(fake_github)
    assert (environment, state) == ("closing", "rejected")
    assert comment.startswith("Refused by Tarmac: Environment is frozen until ")
    assert f"by its calendar window 'quarter-close': {WINDOW_REASON}" in comment
    assert outcome.startswith(f"run {run.id} rejected: Environment is frozen until ")
    [deployment] = await deployments_of(github_api, "closing")
    assert (deployment["kind"], deployment["status"], deployment["actor"]) == (
        "deploy",
        "canceled",
        SENDER,
    )
    assert deployment["error_message"] == comment
    [(actor, action, decision, reason)] = await audited(db)
    assert (actor, action, decision) == (SENDER, "deploy", "refused")
    assert comment == f"Refused by Tarmac: {reason}"
    assert fake_github.calls_to("POST", r"/dispatches$") == []  # the run is GitHub's, not ours


@pytest.mark.both_databases
async def test_an_allowed_hand_run_is_approved_and_followed_like_tarmacs_own(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    run = hand_run(fake_github)

    outcome = await held(webhook, fake_github, run, "staging")
    await outbox.drain()
    [recorded] = await deployments_of(github_api, "staging")
    await accepted(webhook, "workflow_run", run_event("in_progress", run))
    finished = await accepted(webhook, "workflow_run", run_event("completed", run, "success"))
    await outbox.drain()

    assert outcome == f"run {run.id}: deployment {recorded['id']} of v1-rc1 approved"
    assert answers(fake_github) == [
        ("staging", "approved", "Approved by Tarmac: v1-rc1 may be deployed to staging now")
    ]
    assert (recorded["kind"], recorded["actor"], recorded["status"]) == (
        "deploy",
        SENDER,
        "pending",
    )
    assert finished == f"deployment {recorded['id']} success (run {run.id} completed)"
    [deployment] = await deployments_of(github_api, "staging")
    assert deployment["status"] == "success"
    row = await stored_deployment(db, deployment["id"])
    assert (row.workflow_run_id, row.github_deployment_id) == (run.id, 777)
    assert row.workflow_run_url == f"https://github.com/{REPO}/actions/runs/{run.id}"
    # Actions made the job's GitHub Deployment: Tarmac makes none and posts no status.
    assert fake_github.calls_to("POST", r"/deployments") == []
    assert fake_github.calls_to("POST", r"/dispatches$") == []
    assert [(a, d) for a, _, d, _ in await audited(db)] == [(SENDER, "allowed")]


async def test_a_hand_run_to_production_before_staging_soaked_is_rejected_naming_staging(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    deployed = await github_api.deploy("staging", "v1-rc1")
    assert deployed.status == 201, deployed.body
    reported = await github_api.report("staging", "v1-rc1", "success")
    assert reported.status == 200, reported.body
    run = hand_run(fake_github)

    await held(webhook, fake_github, run, "production")
    await outbox.drain()

    [(_, state, comment)] = answers(fake_github)
    assert state == "rejected"
    assert comment.startswith(
        "Refused by Tarmac: v1-rc1 has soaked in staging for 0 of the 60 minutes production "
        "requires: it may go to production from "
    )
    [deployment] = await deployments_of(github_api, "production")
    assert (deployment["status"], deployment["error_message"]) == ("canceled", comment)


async def test_a_redelivered_request_is_answered_once(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    run = hand_run(fake_github)
    payload = protection_rule_event(run, "staging")
    fake_github.hold_at_protection_rule(run, "staging")

    first = await webhook("deployment_protection_rule", payload, delivery_id="gate-1")
    await outbox.drain()
    again = await webhook("deployment_protection_rule", payload, delivery_id="gate-1")
    await outbox.drain()

    assert (first.status, again.status) == (202, 200)
    assert again.body == {"status": "duplicate", "outcome": first.body["outcome"]}
    assert [state for _, state, _ in answers(fake_github)] == ["approved"]
    assert len(await deployments_of(github_api, "staging")) == 1


async def test_an_answer_whose_reply_was_lost_is_not_given_twice(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    clock: TestClock,
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    run = hand_run(fake_github)
    fake_github.fail(r"/deployment_protection_rule$", drop_after_processing=True)

    await held(webhook, fake_github, run, "staging")
    await outbox.drain()  # GitHub took the answer; the reply was lost
    clock.advance(minutes=1)
    await outbox.drain()  # sent again: GitHub has no job waiting any more (422)

    assert len(fake_github.calls_to("POST", r"/deployment_protection_rule$")) == 2
    assert [state for _, state, _ in answers(fake_github)] == ["approved"]
    [deployment] = await deployments_of(github_api, "staging")
    assert deployment["status"] == "pending"  # the 422 of the repeat changed nothing


@pytest.mark.both_databases
async def test_a_hand_run_needing_approvals_is_answered_after_the_second_approval(
    github_client: Any,
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    clock: TestClock,
    db: Database,
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    run = hand_run(fake_github)
    mirror = github_client.app[SERVICE].mirror

    outcome = await held(webhook, fake_github, run, "audited")
    await outbox.drain()
    [waiting] = await deployments_of(github_api, "audited")

    async def approve(who: str) -> None:
        async with db.write() as session:
            await operations.approve(
                session,
                mirror,
                project_name="Backend",
                environment_name="audited",
                deployment_id=waiting["id"],
                approver=Approver(actor=who),
                door=Door.API,
                clock=clock,
            )
        await outbox.drain()

    second_job = await accepted(  # another job of the run at the same environment
        webhook, "deployment_protection_rule", protection_rule_event(run, "audited")
    )
    await approve("alice")
    after_one = answers(fake_github)
    await approve("bob")

    assert (
        outcome == f"run {run.id}: deployment {waiting['id']} of v1-rc1 waits for approval (0 of 2)"
    )
    assert (waiting["status"], waiting["waiting_for"]) == ("pending", "approval (0 of 2)")
    assert second_job == f"deployment {waiting['id']} still waits for approval (0 of 2)"
    assert after_one == []
    assert answers(fake_github) == [
        (
            "audited",
            "approved",
            f"Approved by Tarmac: deployment {waiting['id']} (v1-rc1) may proceed",
        )
    ]
    assert fake_github.calls_to("POST", r"/dispatches$") == []  # answered, not dispatched
    assert [d for _, _, d, _ in await audited(db)] == ["waiting", "allowed"]


async def test_a_run_of_a_commit_tarmac_has_no_candidate_of_is_rejected_saying_so(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    branch_run = fake_github.run_by_hand(REPO, "deploy.yml", "refs/heads/main", SHA_B)
    tag_run = hand_run(fake_github, tag="v1-rc1", sha=SHA_B)

    await held(webhook, fake_github, branch_run, "staging")
    await held(webhook, fake_github, tag_run, "staging")
    await outbox.drain()

    assert answers(fake_github) == [
        (
            "staging",
            "rejected",
            f"Refused by Tarmac: the run deploys commit {SHA_B}, which is no release candidate "
            "Tarmac knows of Backend; run the deploy from a candidate's tag",
        ),
        (
            "staging",
            "rejected",
            f"Refused by Tarmac: the run's commit {SHA_B} is not v1-rc1's ({SHA_A})",
        ),
    ]
    assert await deployments_of(github_api, "staging") == []  # no candidate to record it under


async def test_a_run_for_an_environment_tarmac_does_not_know_is_rejected(
    webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    run = hand_run(fake_github)

    outcome = await held(webhook, fake_github, run, "qa")
    await outbox.drain()

    why = (
        f"no environment 'qa' in Tarmac's projects on {REPO} (Backend); add it to the projects "
        "file, or remove Tarmac from this GitHub environment's protection rules"
    )
    assert outcome == f"run {run.id} rejected: {why}"
    assert answers(fake_github) == [("qa", "rejected", f"Refused by Tarmac: {why}")]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("deployment_callback_url", "https://[::1/repos/acme/backend/actions/runs/1/x"),
        (
            "deployment_callback_url",
            "https://api.github.com/repos/acme/backend/actions/runs/0/deployment_protection_rule",
        ),
        ("deployment_callback_url", 12),
        ("environment", ["staging"]),
        ("environment", "x" * 256),
        ("repository", "acme/backend"),
    ],
)
async def test_a_request_with_no_run_or_environment_to_answer_is_ignored(
    field: str, value: Any, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    payload = protection_rule_event(hand_run(fake_github), "staging")
    payload[field] = value

    reply = await webhook("deployment_protection_rule", payload)
    await outbox.drain()

    assert (reply.status, reply.body["status"]) == (202, "ignored"), reply.body
    assert fake_github.calls_to("POST", r"/deployment_protection_rule$") == []


@pytest.mark.parametrize(
    "broken",
    [
        {"sha": 12, "ref": ["v1-rc1"], "sender": "octocat", "deployment": "777"},
        {"sha": "not a sha", "ref": "refs/tags/" + "v" * 400, "sender": {"login": "\u0007"}},
    ],
)
async def test_odd_fields_beside_the_run_still_get_an_answer_never_a_5xx(
    broken: dict[str, Any],
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    run = hand_run(fake_github)
    fake_github.hold_at_protection_rule(run, "staging")
    payload = {**protection_rule_event(run, "staging"), **broken}

    outcome = await accepted(webhook, "deployment_protection_rule", payload)
    await outbox.drain()

    assert outcome.startswith(f"run {run.id} rejected: the run deploys ")
    assert [state for _, state, _ in answers(fake_github)] == ["rejected"]


# --- Tarmac's own runs ----------------------------------------------------------------------


async def dispatched(api: Api, outbox: OutboxWorker, fake: FakeGitHub, environment: str) -> Run:
    """Tarmac deploys v1-rc1 to `environment`: its run, dispatched."""
    deployed = await api.deploy(environment, "v1-rc1")
    assert deployed.status == 201, deployed.body
    await outbox.drain()
    [run] = [r for r in fake.runs.values() if r.inputs.get("tarmac_deployment_id")]
    run.head_sha = SHA_A
    return run


@pytest.mark.both_databases
async def test_tarmacs_own_run_is_approved_and_nothing_new_is_recorded(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    run = await dispatched(github_api, outbox, fake_github, "staging")
    [deployment] = await deployments_of(github_api, "staging")

    outcome = await held(webhook, fake_github, run, "staging")
    await outbox.drain()

    assert outcome == f"deployment {deployment['id']} approved"
    assert answers(fake_github) == [
        (
            "staging",
            "approved",
            f"Approved by Tarmac: deployment {deployment['id']} (v1-rc1) may proceed",
        )
    ]
    assert len(await deployments_of(github_api, "staging")) == 1
    assert [d for _, _, d, _ in await audited(db)] == ["allowed"]


async def test_tarmacs_own_run_is_rejected_when_a_freeze_began_since_tarmac_decided(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    clock: TestClock,
) -> None:
    await github_api.create_rc("v1-rc1", SHA_A)
    run = await dispatched(github_api, outbox, fake_github, "staging")
    clock.advance(minutes=1)
    frozen = await github_api.put(
        "/api/releases/Backend/environments/staging/freeze", {"reason": "Release week"}
    )
    assert frozen.status == 200, frozen.body

    outcome = await held(webhook, fake_github, run, "staging")
    await outbox.drain()

    why = "Environment is frozen by ci@example.com: Release week"
    [deployment] = await deployments_of(github_api, "staging")
    assert outcome == f"deployment {deployment['id']} rejected: {why}"
    assert answers(fake_github) == [("staging", "rejected", f"Refused by Tarmac: {why}")]
    assert (deployment["status"], deployment["error_message"]) == (
        "canceled",
        f"Refused by Tarmac: {why}",
    )
