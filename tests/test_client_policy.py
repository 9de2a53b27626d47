"""The release policy from the `tarmac` client: `deploy --force --reason`, `approve`, `reject`,
`mark-bad`, `clear-bad` and `audit`, as real `tarmac` processes against the app on a loopback
server (GitHub App configured, the fake GitHub); every `--json` output is checked against
docs/cli-schema.json."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.storage.db import Database
from tests.conftest import SHA_A, SHA_B, Api, make_token
from tests.test_api_policy import POLICY_YAML
from tests.test_client_cli import Client, valid


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(POLICY_YAML)
    return path


@pytest.fixture
def client(github_api: Api, tmp_path: Path) -> Client:
    assert github_api.token is not None
    return Client(str(github_api.client.make_url("")).rstrip("/"), github_api.token, tmp_path)


async def test_deploy_force_needs_a_reason_and_goes_past_the_promotion_order(
    github_api: Api, client: Client
) -> None:
    assert (await github_api.create_rc("v1.0.0-rc1", SHA_A)).status == 201
    deploy = ("deploy", "Backend", "v1.0.0-rc1", "--to", "production")

    refused = await client(*deploy)
    no_reason = await client(*deploy, "--force")
    forced = await client(*deploy, "--force", "--reason", "hotfix INC-42", "--json")

    assert (refused.code, refused.stdout) == (1, "")
    assert refused.stderr == (
        "error: v1.0.0-rc1 must succeed in staging before it goes to production (it runs "
        "none); deploy it to staging first\n"
    )
    assert (no_reason.code, no_reason.stderr) == (
        1,
        "error: A forced deploy needs a reason: say why in 'reason'\n",
    )
    assert forced.code == 0, forced.stderr
    assert valid(forced.json(), "deploy")["status"] == "pending"
    [newest, *_] = (await github_api.get("/api/releases/Backend/audit")).body
    assert (newest["decision"], newest["reason"].split(" (")[0]) == ("forced", "hotfix INC-42")


async def test_approve_and_reject_a_deployment_waiting_for_two_approvals(
    github_api: Api, client: Client, db: Database, tmp_path: Path
) -> None:
    ana = Client(client.url, await make_token(db, "ana", actor="ana@example.com"), tmp_path)
    bo = Client(client.url, await make_token(db, "bo", actor="bo@example.com"), tmp_path)
    assert (await github_api.create_rc("v1.0.0-rc1", SHA_A)).status == 201
    asked = await client("deploy", "Backend", "v1.0.0-rc1", "--to", "canary")
    deployment = asked.stdout.split(":")[0].removeprefix("deployment ")

    own = await client("approve", "Backend", "canary", deployment)
    first = await ana("approve", "Backend", "canary", deployment)
    last = await bo("approve", "Backend", "canary", deployment, "--json")
    await client("deploy", "Backend", "v1.0.0-rc1", "--to", "canary")
    waiting = (await github_api.deployments("canary")).body[0]["id"]
    no_reason = await ana("reject", "Backend", "canary", str(waiting))
    rejected = await ana("reject", "Backend", "canary", str(waiting), "--reason", "not today")
    not_a_number = await ana("approve", "Backend", "canary", "latest")

    assert asked.stdout == (
        f"deployment {deployment}: v1.0.0-rc1 to canary: pending (waiting for approval (0 of 2))\n"
    )
    assert (own.code, own.stderr) == (1, "error: You cannot approve a deployment you asked for\n")
    assert (first.code, first.stdout) == (
        0,
        f"deployment {deployment}: approved by ana@example.com; waiting for approval (1 of 2)\n",
    )
    assert last.code == 0, last.stderr
    approved = valid(last.json(), "approve")
    assert [a["approver"] for a in approved["approvals"]] == ["ana@example.com", "bo@example.com"]
    assert approved["waiting_for"] is None
    assert no_reason.code == 2
    assert "--reason" in no_reason.stderr
    assert (rejected.code, rejected.stdout) == (
        0,
        f"deployment {waiting} ended canceled: Rejected by ana@example.com: not today\n",
    )
    assert not_a_number.code == 2


async def test_mark_bad_refuses_every_deploy_until_clear_bad(
    github_api: Api, client: Client
) -> None:
    assert (await github_api.create_rc("v1.0.0-rc1", SHA_A)).status == 201

    marked = await client("mark-bad", "Backend", "v1.0.0-rc1", "--reason", "corrupts invoices")
    refused = await client("deploy", "Backend", "v1.0.0-rc1", "--to", "staging")
    cleared = await client("clear-bad", "Backend", "v1.0.0-rc1", "--json")
    again = await client("clear-bad", "Backend", "v1.0.0-rc1")
    deployed = await client("deploy", "Backend", "v1.0.0-rc1", "--to", "staging")

    assert (marked.code, marked.stdout) == (
        0,
        "v1.0.0-rc1 marked bad by ci@example.com: corrupts invoices\n",
    )
    assert (refused.code, refused.stderr) == (
        1,
        "error: Release candidate is marked bad by ci@example.com: corrupts invoices; clear "
        "the mark to deploy it\n",
    )
    assert cleared.code == 0, cleared.stderr
    assert valid(cleared.json(), "clear_bad")["rejected"] is None
    assert (again.code, again.stdout) == (0, "v1.0.0-rc1 is not marked bad\n")
    assert deployed.code == 0, deployed.stderr


async def test_audit_lists_the_decisions_a_page_at_a_time_and_by_environment(
    github_api: Api, client: Client
) -> None:
    assert (await github_api.create_rc("v1.0.0-rc1", SHA_A)).status == 201
    assert (await github_api.create_rc("v1.0.0-rc2", SHA_B)).status == 201
    await client("mark-bad", "Backend", "v1.0.0-rc2", "--reason", "broken build")
    await client("deploy", "Backend", "v1.0.0-rc2", "--to", "staging")  # refused
    await client("deploy", "Backend", "v1.0.0-rc1", "--to", "canary")  # waits

    every, canary, first_page, human = await asyncio.gather(
        client("audit", "Backend", "--json"),
        client("audit", "Backend", "--environment", "canary", "--json"),
        client("audit", "Backend", "--per-page", "2", "--json"),
        client("audit", "Backend", "--per-page", "2"),
    )
    unknown = await client("audit", "Backend", "--environment", "qa")
    too_many = await client("audit", "Backend", "--per-page", "101")

    listed = valid(every.json(), "audit")
    assert [(e["action"], e["decision"]) for e in listed["events"]] == [
        ("deploy", "waiting"),
        ("deploy", "refused"),
        ("mark_bad", "marked"),
    ]
    assert listed["next_page"] is None
    assert [e["environment_name"] for e in valid(canary.json(), "audit")["events"]] == ["canary"]
    page = valid(first_page.json(), "audit")
    assert (len(page["events"]), page["next_page"]) == (2, 2)
    header, *rows, more = human.stdout.splitlines()
    assert header.split() == [
        "AT",
        "DOOR",
        "ACTOR",
        "ACTION",
        "DECISION",
        "ENVIRONMENT",
        "RC",
        "REASON",
    ]
    assert len(rows) == 2
    assert rows[1].split()[1:6] == ["api", "ci@example.com", "deploy", "refused", "staging"]
    assert more == "(more: --page 2)"
    assert (unknown.code, unknown.stderr) == (1, "error: Release environment not found\n")
    assert too_many.code == 2
