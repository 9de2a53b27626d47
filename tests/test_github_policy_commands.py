"""The release policy through pull-request commands, end to end: GitHub's `issue_comment`
example payloads, re-addressed and signed, through the real app; the outbox reads the
commenter's permission (and, where approvals name a team, their membership) from the fake
GitHub, runs the command and posts the reply. What was decided is read back from the REST
API, the fake GitHub and the audit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.github.outbound.worker import OutboxWorker
from bot.storage.db import Database
from bot.storage.models import AuditEvent
from tests.conftest import Api, TestClock, Webhooks
from tests.fake_github import FakeGitHub
from tests.test_github_comments import BACKEND, history, replies, send_comment

POLICY_YAML = """
projects:
  - name: Backend
    repo: acme/backend
    environments:
      - name: staging
        deploy_workflow: deploy.yml
      - name: production
        deploy_workflow: deploy.yml
        production: true
        requires: [staging]
        approvals:
          required: 2
      - name: eu
        deploy_workflow: deploy.yml
        approvals:
          required: 1
          from: ["@acme/release-managers"]
"""
MEMBERSHIPS = r"/orgs/acme/teams/release-managers/memberships/"


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(POLICY_YAML)
    return path


def writers(fake: FakeGitHub, *logins: str, role: str = "write") -> None:
    for login in logins:
        fake.grant(BACKEND, login, "write", role)


async def audit(db: Database) -> list[AuditEvent]:
    async with db.read() as session:
        return list(await session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def dispatches_of(fake: FakeGitHub, deployment_id: int) -> list[Any]:
    return [
        call
        for call in fake.calls_to("POST", r"/actions/workflows/deploy\.yml/dispatches$")
        if (call.body or {}).get("inputs", {}).get("tarmac_deployment_id") == str(deployment_id)
    ]


async def comment(
    webhook: Webhooks, outbox: OutboxWorker, fake: FakeGitHub, body: str, login: str
) -> str:
    """`body` commented by `login`; the reply Tarmac posted to it."""
    before = len(fake.comments)
    await send_comment(webhook, outbox, body, login=login)
    [reply] = replies(fake)[before:]
    return reply


async def in_staging(api: Api, outbox: OutboxWorker, version: str = "v1-rc1") -> None:
    await api.ship("staging", version)
    await outbox.drain()


async def test_a_deploy_out_of_order_is_refused_with_what_to_do_and_audited(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    assert (await github_api.create_rc("v1-rc1")).status == 201
    writers(fake_github, "octocat")

    reply = await comment(webhook, outbox, fake_github, "/deploy v1-rc1 to production", "octocat")

    assert reply == (
        "> `/deploy v1-rc1 to production`\n\n🚫 v1-rc1 must succeed in staging before it goes "
        "to production (it runs none); deploy it to staging first."
    )
    assert await history(github_api) == []
    [refused] = await audit(db)
    assert (refused.door, refused.actor, refused.action, refused.decision) == (
        "pull_request",
        "github:octocat",
        "deploy",
        "refused",
    )
    assert refused.reason is not None
    assert refused.reason.startswith("v1-rc1 must succeed in staging")


@pytest.mark.both_databases
async def test_two_others_approve_and_the_workflow_is_dispatched_exactly_once(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    await in_staging(github_api, outbox)
    writers(fake_github, "octocat", "alice", "bob")

    asked = await comment(webhook, outbox, fake_github, "/deploy v1-rc1 to production", "octocat")
    [waiting] = await history(github_api)
    assert (waiting["status"], waiting["waiting_for"]) == ("pending", "approval (0 of 2)")
    assert f"Tarmac deployment {waiting['id']}." in asked
    assert "It waits for 2 approval(s) by others than @octocat (`/approve production`)" in asked
    assert dispatches_of(fake_github, waiting["id"]) == []

    own = await comment(webhook, outbox, fake_github, "/approve production", "octocat")
    assert own.endswith("🚫 You cannot approve a deployment you asked for.")

    first = await comment(webhook, outbox, fake_github, "/approve production", "alice")
    assert first.endswith(
        f"✅ @alice approved deployment {waiting['id']} (`v1-rc1`) to **production** "
        "(Backend): 1 of 2 approvals; waiting for 1 more."
    )
    again = await comment(webhook, outbox, fake_github, "/approve production", "alice")
    assert "@alice had approved deployment" in again
    assert again.endswith("1 of 2 approvals; waiting for 1 more.")
    assert dispatches_of(fake_github, waiting["id"]) == []

    last = await comment(webhook, outbox, fake_github, "/approve production", "bob")
    assert "@bob approved deployment" in last
    assert "2 of 2 approvals." in last
    assert "The deploy workflow `deploy.yml` is being started" in last
    assert len(dispatches_of(fake_github, waiting["id"])) == 1

    late = await comment(webhook, outbox, fake_github, "/approve production", "alice")
    assert late.endswith("🚫 no deployment of **production** (Backend) is waiting for approval.")
    assert len(dispatches_of(fake_github, waiting["id"])) == 1
    [approved] = await history(github_api)
    assert approved["waiting_for"] is None
    # No team is named: nobody's membership was asked for.
    assert fake_github.calls_to("GET", r"/orgs/") == []
    approvals = [(e.actor, e.decision) for e in await audit(db) if e.action == "approve"]
    assert approvals == [
        ("github:octocat", "refused"),
        ("github:alice", "approved"),
        ("github:bob", "approved"),
    ]
    by_commands = [e for e in await audit(db) if (e.actor or "").startswith("github:")]
    assert (by_commands[0].action, by_commands[0].decision) == ("deploy", "waiting")
    assert {e.door for e in by_commands} == {"pull_request"}


async def test_an_approval_the_team_does_not_give_is_refused_and_a_members_counts(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    assert (await github_api.create_rc("v1-rc1")).status == 201
    assert (await github_api.deploy("eu", "v1-rc1")).status == 201
    await outbox.drain()
    [waiting] = await history(github_api, "eu")
    writers(fake_github, "carol", "dave", role="admin")
    fake_github.add_team_member("acme/release-managers", "dave")
    fake_github.add_team_member("acme/release-managers", "carol", state="pending")

    refused = await comment(webhook, outbox, fake_github, "/approve eu", "carol")

    assert refused.endswith(
        "🚫 You may not approve deployments to this environment: approvals here come from "
        "@\u200bacme/release-managers."
    )
    assert dispatches_of(fake_github, waiting["id"]) == []
    [asked] = fake_github.calls_to("GET", MEMBERSHIPS)
    assert asked.path.endswith("/carol")

    approved = await comment(webhook, outbox, fake_github, "/approve eu", "dave")

    assert "@dave approved deployment" in approved
    assert "1 of 1 approvals." in approved
    assert len(dispatches_of(fake_github, waiting["id"])) == 1
    decisions = [(e.actor, e.decision, e.door) for e in await audit(db) if e.action == "approve"]
    assert decisions == [
        ("github:carol", "refused", "pull_request"),
        ("github:dave", "approved", "pull_request"),
    ]


async def test_without_the_members_permission_nobody_approves_for_a_team(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    assert (await github_api.create_rc("v1-rc1")).status == 201
    assert (await github_api.deploy("eu", "v1-rc1")).status == 201
    await outbox.drain()
    writers(fake_github, "dave")
    fake_github.add_team_member("acme/release-managers", "dave")
    fake_github.members_permission = False

    refused = await comment(webhook, outbox, fake_github, "/approve eu", "dave")

    assert "🚫 You may not approve deployments to this environment" in refused
    [waiting] = await history(github_api, "eu")
    assert waiting["waiting_for"] == "approval (0 of 1)"


async def test_a_rejected_deployment_is_canceled_with_the_reason(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    await in_staging(github_api, outbox)
    writers(fake_github, "octocat", "alice")
    await comment(webhook, outbox, fake_github, "/deploy v1-rc1 to production", "octocat")
    [waiting] = await history(github_api)

    reply = await comment(
        webhook, outbox, fake_github, "/reject production not during the sale", "alice"
    )

    assert reply.endswith(
        f"✅ @alice rejected deployment {waiting['id']} (`v1-rc1`) to **production** "
        "(Backend): not during the sale. It is canceled."
    )
    [canceled] = await history(github_api)
    assert canceled["status"] == "canceled"
    assert dispatches_of(fake_github, waiting["id"]) == []
    [rejected] = [e for e in await audit(db) if e.action == "reject_deployment"]
    assert (rejected.door, rejected.actor, rejected.reason) == (
        "pull_request",
        "github:alice",
        "not during the sale",
    )


async def test_a_candidate_marked_bad_is_refused_until_the_mark_is_cleared(
    github_api: Api, webhook: Webhooks, outbox: OutboxWorker, fake_github: FakeGitHub, db: Database
) -> None:
    assert (await github_api.create_rc("v1-rc1")).status == 201
    writers(fake_github, "octocat")

    marked = await comment(
        webhook, outbox, fake_github, "/mark-bad v1-rc1 corrupts uploads", "octocat"
    )
    assert marked.endswith(
        "✅ `v1-rc1` (Backend) is marked bad: corrupts uploads. Every deploy of it is refused, "
        "and rollbacks skip it, until `/clear-bad v1-rc1`."
    )

    refused = await comment(webhook, outbox, fake_github, "/deploy v1-rc1 to staging", "octocat")
    assert refused.endswith(
        "🚫 Release candidate is marked bad by github:octocat: corrupts uploads; clear the "
        "mark to deploy it."
    )
    assert await history(github_api, "staging") == []

    cleared = await comment(webhook, outbox, fake_github, "/clear-bad v1-rc1", "octocat")
    assert cleared.endswith("✅ `v1-rc1` (Backend) is no longer marked bad.")
    again = await comment(webhook, outbox, fake_github, "/clear-bad v1-rc1", "octocat")
    assert again.endswith("✅ `v1-rc1` (Backend) was not marked bad; nothing changed.")
    deployed = await comment(webhook, outbox, fake_github, "/deploy v1-rc1 to staging", "octocat")
    assert "✅ Deploying `v1-rc1`" in deployed

    decisions = [(e.action, e.decision, e.door) for e in await audit(db)]
    assert decisions == [
        ("mark_bad", "marked", "pull_request"),
        ("deploy", "refused", "pull_request"),
        ("clear_bad", "cleared", "pull_request"),
        ("deploy", "allowed", "pull_request"),
    ]


@pytest.mark.parametrize(
    ("role", "forced"), [("write", False), ("maintain", True)], ids=["writer", "maintainer"]
)
async def test_a_forced_deploy_needs_maintain_overrides_the_order_and_still_waits_for_approvals(
    github_api: Api,
    webhook: Webhooks,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    db: Database,
    clock: TestClock,
    role: str,
    forced: bool,
) -> None:
    assert (await github_api.create_rc("v1-rc1")).status == 201
    writers(fake_github, "octocat", role=role)
    line = "/deploy v1-rc1 to production --force hotfix for INC-42"

    reply = await comment(webhook, outbox, fake_github, line, "octocat")

    if not forced:
        assert reply.endswith(
            "🚫 `--force` needs the **maintain** or **admin** role on acme/backend; "
            "@octocat has **write**."
        )
        assert await history(github_api) == []
        return
    assert "Forced (audited), as @octocat said: hotfix for INC-42." in reply
    assert "It waits for 2 approval(s)" in reply
    [waiting] = await history(github_api)
    assert waiting["waiting_for"] == "approval (0 of 2)"
    [entry] = [e for e in await audit(db) if e.action == "deploy"]
    assert (entry.decision, entry.door) == ("forced", "pull_request")
    assert entry.reason is not None
    assert entry.reason.startswith("hotfix for INC-42 (overrode: v1-rc1 must succeed in staging")
