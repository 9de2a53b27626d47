"""The release policy through GraphQL (docs/policy.md): the same rules and refusal texts as
REST through the same operations, approvals that dispatch the workflow once, bad candidates,
the environment's policy and calendar, and the audit, refusals included (written after the
request's transaction rolled back)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from api.keys import SERVICE
from bot.storage.db import Database
from bot.storage.models import AuditEvent
from tests.conftest import SHA_A, SHA_B, Api, TestClock, make_token
from tests.fake_github import FakeGitHub
from tests.test_api_errors import snapshot
from tests.test_graphql import codes, counted_statements, gql

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
        soak_minutes: 60
      - name: approved
        deploy_workflow: deploy.yml
        approvals:
          required: 2
      - name: weekend
        freezes:
          - name: weekend
            reason: No deploys over the weekend
            timezone: America/New_York
            rrule: FREQ=WEEKLY;BYDAY=FR;BYHOUR=17;BYMINUTE=0
            duration: 64h
"""

DEPLOY = """mutation($environment: String!, $version: String!, $force: Boolean! = false,
  $reason: String) {
  deploy(project: "Backend", environment: $environment, version: $version, force: $force,
    reason: $reason) { id status approvalsRequired waitingFor }
}"""
APPROVE = """mutation($id: ID!) {
  approve(project: "Backend", environment: "approved", deploymentId: $id) {
    status waitingFor approvals { approver at expiresAt }
  }
}"""
REJECT = """mutation($id: ID!, $reason: String!) {
  rejectDeployment(project: "Backend", environment: "approved", deploymentId: $id,
    reason: $reason) { status errorMessage waitingFor }
}"""
MARK_BAD = """mutation($version: String!, $reason: String!) {
  markBad(project: "Backend", version: $version, reason: $reason) {
    version rejected { reason by at }
  }
}"""
CLEAR_BAD = """mutation($version: String!) {
  clearBad(project: "Backend", version: $version) { version rejected { reason } }
}"""
AUDIT = """query($environment: String, $first: Int! = 10, $after: String) {
  project(name: "Backend") {
    audit(environment: $environment, first: $first, after: $after) {
      nodes { id at door actor action decision reason environment version deploymentId }
      pageInfo { hasNextPage endCursor }
    }
  }
}"""
RC1, RC2 = "v1.4.0-rc1", "v1.4.0-rc2"


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(POLICY_YAML)
    return path


def refused(answer: dict[str, Any]) -> tuple[str, str, int]:
    assert answer["data"] is None, answer
    [only] = codes(answer)
    return only


def utc(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def deploy(api: Api, environment: str, version: str, **more: Any) -> dict[str, Any]:
    return await gql(api, DEPLOY, {"environment": environment, "version": version, **more})


async def audit(api: Api, **variables: Any) -> list[dict[str, Any]]:
    answer = await gql(api, AUDIT, variables)
    assert "errors" not in answer, answer
    nodes: list[dict[str, Any]] = answer["data"]["project"]["audit"]["nodes"]
    return nodes


# --- promotion order and soak ------------------------------------------------------------


async def test_production_before_staging_and_before_the_soak_is_refused_as_rest_words_it(
    api: Api, clock: TestClock
) -> None:
    await api.create_rc(RC1, SHA_A)
    await api.create_rc(RC2, SHA_B)
    await api.deploy("staging", RC1)
    await api.report("staging", RC1, "success")

    before_staging = await deploy(api, "production", RC2)
    await api.deploy("staging", RC2)
    await api.report("staging", RC2, "success")
    staged_at = clock.now
    clock.advance(minutes=12)
    soaking = await deploy(api, "production", RC2)
    forced_without_reason = await deploy(api, "production", RC2, force=True)
    clock.advance(minutes=48)
    soaked = await deploy(api, "production", RC2)

    assert refused(before_staging) == (
        f"{RC2} must succeed in staging before it goes to production (it runs {RC1}); "
        "deploy it to staging first",
        "NOT_PROMOTED",
        400,
    )
    ready_at = (staged_at + timedelta(minutes=60)).strftime("%Y-%m-%d %H:%M:%S")
    assert refused(soaking) == (
        f"{RC2} has soaked in staging for 12 of the 60 minutes production requires: it may "
        f"go to production from {ready_at} UTC (48 minutes from now)",
        "STILL_SOAKING",
        400,
    )
    assert refused(forced_without_reason) == (
        "A forced deploy needs a reason: say why in 'reason'",
        "FORCE_NEEDS_REASON",
        400,
    )
    assert "errors" not in soaked, soaked
    assert soaked["data"]["deploy"]["status"] == "PENDING"


async def test_a_forced_deploy_with_a_reason_goes_and_is_audited_with_what_it_overrode(
    api: Api,
) -> None:
    await api.create_rc(RC2, SHA_B)

    forced = await deploy(api, "production", RC2, force=True, reason="hotfix for INC-7")

    assert "errors" not in forced, forced
    [entry] = await audit(api, environment="production")
    assert entry["decision"] == "FORCED"
    assert entry["door"] == "API"
    assert entry["deploymentId"] == forced["data"]["deploy"]["id"]
    assert entry["reason"] == (
        f"hotfix for INC-7 (overrode: {RC2} must succeed in staging before it goes to "
        "production (it runs none); deploy it to staging first)"
    )


# --- calendar freezes and the environment's policy ---------------------------------------

ENVIRONMENTS = """{ project(name: "Backend") { environments {
  name frozen calendarFreeze { window reason until }
  nextFreeze { window reason startsAt endsAt }
  policy { requires soakMinutes approvalsRequired } } } }"""


async def test_environments_show_their_policy_and_calendar(api: Api, clock: TestClock) -> None:
    # Friday 2026-12-04 18:00 in New York (EST, UTC-5): inside the weekend window.
    clock.now = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)
    await api.create_rc(RC1, SHA_A)

    answer = await gql(api, ENVIRONMENTS)
    frozen = await deploy(api, "weekend", RC1)
    clock.now = datetime(2026, 12, 7, 14, 1, tzinfo=UTC)  # Monday 09:01 EST
    monday = await gql(api, ENVIRONMENTS)
    allowed = await deploy(api, "weekend", RC1)

    assert "errors" not in answer, answer
    staging, production, approved, weekend = answer["data"]["project"]["environments"]
    assert staging["policy"] == {"requires": [], "soakMinutes": 0, "approvalsRequired": 0}
    assert production["policy"] == {
        "requires": ["staging"],
        "soakMinutes": 60,
        "approvalsRequired": 0,
    }
    assert approved["policy"]["approvalsRequired"] == 2
    assert staging["calendarFreeze"] is None
    assert staging["nextFreeze"] is None
    assert weekend["frozen"] is False  # `frozen` is the manual freeze
    assert weekend["calendarFreeze"] == {
        "window": "weekend",
        "reason": "No deploys over the weekend",
        "until": "2026-12-07T14:00:00Z",
    }
    assert weekend["nextFreeze"] == {
        "window": "weekend",
        "reason": "No deploys over the weekend",
        "startsAt": "2026-12-11T22:00:00Z",
        "endsAt": "2026-12-14T14:00:00Z",
    }
    assert refused(frozen) == (
        "Environment is frozen until Monday 2026-12-07 09:00 EST (America/New_York) by its "
        "calendar window 'weekend': No deploys over the weekend; deploy with force and a "
        "reason to override it",
        "FROZEN_BY_CALENDAR",
        400,
    )
    monday_weekend = monday["data"]["project"]["environments"][3]
    assert monday_weekend["calendarFreeze"] is None
    assert monday_weekend["nextFreeze"]["startsAt"] == "2026-12-11T22:00:00Z"
    assert "errors" not in allowed, allowed


# --- approvals ---------------------------------------------------------------------------


async def test_two_approvals_by_others_dispatch_the_workflow_exactly_once(
    github_api: Api, db: Database, fake_github: FakeGitHub, outbox: Any, clock: TestClock
) -> None:
    alice = await make_token(db, "alice", actor="alice@example.com")
    bob = await make_token(db, "bob", actor="bob@example.com")
    carol = await make_token(db, "carol", actor="carol@example.com")
    await github_api.create_rc(RC1, SHA_A)

    def dispatches() -> int:
        return len(fake_github.calls_to("POST", r"/actions/workflows/deploy\.yml/dispatches$"))

    asked = await deploy(github_api, "approved", RC1)
    deployment = asked["data"]["deploy"]
    one = {"id": deployment["id"]}
    await outbox.drain()
    dispatched_before = dispatches()
    own = await gql(github_api, APPROVE, one)
    first = await gql(github_api, APPROVE, one, token=alice)
    again = await gql(github_api, APPROVE, one, token=alice)
    await outbox.drain()
    dispatched_after_one = dispatches()
    approved_at = clock.now
    second = await gql(github_api, APPROVE, one, token=bob)
    late = await gql(github_api, APPROVE, one, token=carol)
    await outbox.drain()
    await outbox.drain()

    assert deployment == {
        "id": deployment["id"],
        "status": "PENDING",
        "approvalsRequired": 2,
        "waitingFor": "approval (0 of 2)",
    }
    assert dispatched_before == 0
    assert refused(own) == (
        "You cannot approve a deployment you asked for",
        "SELF_APPROVAL",
        400,
    )
    assert first["data"]["approve"]["waitingFor"] == "approval (1 of 2)"
    assert again == first  # the same person again changes nothing
    assert dispatched_after_one == 0
    expires = utc(approved_at + timedelta(hours=24))
    assert second["data"]["approve"] == {
        "status": "PENDING",
        "waitingFor": None,
        "approvals": [
            {"approver": "alice@example.com", "at": utc(approved_at), "expiresAt": expires},
            {"approver": "bob@example.com", "at": utc(approved_at), "expiresAt": expires},
        ],
    }
    assert refused(late) == (
        "Deployment is not waiting for approval",
        "NOT_WAITING_FOR_APPROVAL",
        400,
    )
    assert dispatches() == 1
    decisions = [
        (e["action"], e["decision"], e["actor"]) for e in await audit(github_api, first=20)
    ]
    assert decisions == [
        ("APPROVE", "REFUSED", "carol@example.com"),
        ("APPROVE", "APPROVED", "bob@example.com"),
        ("APPROVE", "APPROVED", "alice@example.com"),
        ("APPROVE", "REFUSED", "ci@example.com"),
        ("DEPLOY", "WAITING", "ci@example.com"),
    ]


async def test_a_rejected_deployment_is_canceled_with_its_reason(api: Api, db: Database) -> None:
    alice = await make_token(db, "alice", actor="alice@example.com")
    await api.create_rc(RC1, SHA_A)
    asked = await deploy(api, "approved", RC1)
    one = {"id": asked["data"]["deploy"]["id"]}

    blank = await gql(api, REJECT, {**one, "reason": "  "}, token=alice)
    rejected = await gql(api, REJECT, {**one, "reason": "not during the launch"}, token=alice)
    approved = await gql(api, APPROVE, one, token=alice)

    assert refused(blank) == (
        "'reason' must say why: 1 to 2000 characters",
        "INVALID_ARGUMENT",
        400,
    )
    assert rejected["data"]["rejectDeployment"] == {
        "status": "CANCELED",
        "errorMessage": "Rejected by alice@example.com: not during the launch",
        "waitingFor": None,
    }
    assert refused(approved)[1] == "NOT_WAITING_FOR_APPROVAL"


def app_db(api: Api) -> Database:
    """The app's own database, whose statements a test counts."""
    database: Database = api.client.app[SERVICE].db
    return database


@pytest.mark.both_databases
async def test_approvals_of_many_deployments_cost_one_statement(api: Api, db: Database) -> None:
    alice = await make_token(db, "alice", actor="alice@example.com")
    await api.create_rc(RC1, SHA_A)
    query = """{ project(name: "Backend") { deployments(environment: "approved", first: 50) {
      nodes { approvalsRequired approvals { approver } } } } }"""

    async def statements_for(deployments: int) -> tuple[int, list[Any]]:
        for _ in range(deployments):
            asked = await deploy(api, "approved", RC1)
            await gql(api, APPROVE, {"id": asked["data"]["deploy"]["id"]}, token=alice)
        await gql(api, query)  # the token's use noted
        with counted_statements(app_db(api)) as seen:
            answer = await gql(api, query)
        assert "errors" not in answer, answer
        return len(seen), answer["data"]["project"]["deployments"]["nodes"]

    one, _ = await statements_for(1)
    many, nodes = await statements_for(5)

    assert one == many
    assert len(nodes) == 6
    assert all(n["approvals"] == [{"approver": "alice@example.com"}] for n in nodes)


# --- bad candidates ----------------------------------------------------------------------


async def test_a_candidate_marked_bad_is_refused_until_cleared(api: Api, clock: TestClock) -> None:
    await api.create_rc(RC1, SHA_A)

    marked = await gql(api, MARK_BAD, {"version": RC1, "reason": "corrupts sessions"})
    marked_at = clock.now
    deploy_refused = await deploy(api, "staging", RC1)
    forced_refused = await deploy(api, "staging", RC1, force=True, reason="need it")
    blank = await gql(api, MARK_BAD, {"version": RC1, "reason": ""})
    nul = await gql(api, MARK_BAD, {"version": RC1, "reason": "a\x00b"})
    long = await gql(api, DEPLOY, {"environment": "staging", "version": RC1, "reason": "x" * 2001})
    cleared = await gql(api, CLEAR_BAD, {"version": RC1})
    deployed = await deploy(api, "staging", RC1)

    assert marked["data"]["markBad"] == {
        "version": RC1,
        "rejected": {"reason": "corrupts sessions", "by": "ci@example.com", "at": utc(marked_at)},
    }
    bad = (
        "Release candidate is marked bad by ci@example.com: corrupts sessions; clear the mark "
        "to deploy it",
        "CANDIDATE_REJECTED",
        400,
    )
    assert refused(deploy_refused) == bad
    assert refused(forced_refused) == bad  # force never overrides a bad mark
    assert refused(blank)[1] == "INVALID_ARGUMENT"
    assert refused(nul) == ("'reason' must not contain NUL characters", "INVALID_ARGUMENT", 400)
    assert refused(long) == ("'reason' must be at most 2000 characters", "INVALID_ARGUMENT", 400)
    assert cleared["data"]["clearBad"] == {"version": RC1, "rejected": None}
    assert "errors" not in deployed, deployed


# --- the audit ---------------------------------------------------------------------------


@pytest.mark.both_databases
async def test_the_audit_lists_decisions_newest_first_by_cursor(api: Api) -> None:
    await api.create_rc(RC1, SHA_A)
    await gql(api, MARK_BAD, {"version": RC1, "reason": "flaky"})
    await gql(api, CLEAR_BAD, {"version": RC1})
    deployed = await deploy(api, "staging", RC1)

    first = await gql(api, AUDIT, {"first": 2})
    page = first["data"]["project"]["audit"]
    second = await gql(api, AUDIT, {"first": 2, "after": page["pageInfo"]["endCursor"]})
    staging = await audit(api, environment="staging")
    unknown = await gql(api, AUDIT, {"environment": "qa"})
    other_list = await gql(
        api,
        """query($after: String) { project(name: "Backend") {
          deployments(after: $after) { nodes { id } } } }""",
        {"after": page["pageInfo"]["endCursor"]},
    )

    listed = page["nodes"] + second["data"]["project"]["audit"]["nodes"]
    assert [(e["action"], e["decision"]) for e in listed] == [
        ("DEPLOY", "ALLOWED"),
        ("CLEAR_BAD", "CLEARED"),
        ("MARK_BAD", "MARKED"),
    ]
    assert page["pageInfo"]["hasNextPage"] is True
    assert second["data"]["project"]["audit"]["pageInfo"]["hasNextPage"] is False
    newest = listed[0]
    assert newest["door"] == "API"
    assert newest["actor"] == "ci@example.com"
    assert newest["environment"] == "staging"
    assert newest["version"] == RC1
    assert newest["deploymentId"] == deployed["data"]["deploy"]["id"]
    marked = listed[2]
    assert (marked["environment"], marked["version"], marked["reason"]) == (None, RC1, "flaky")
    assert [e["id"] for e in staging] == [newest["id"]]
    assert codes(unknown) == [("Release environment not found", "ENVIRONMENT_NOT_FOUND", 404)]
    assert [code for _, code, _ in codes(other_list)] == ["INVALID_ARGUMENT"]


async def test_a_refused_mutation_changes_nothing_but_its_refusal_is_audited(
    api: Api, db: Database
) -> None:
    await api.create_rc(RC2, SHA_B)
    before = await snapshot(db)

    answer = await gql(
        api,
        f"""mutation {{
          staged: deploy(project: "Backend", environment: "staging", version: "{RC2}") {{ id }}
          refused: deploy(project: "Backend", environment: "production", version: "{RC2}") {{
            id }}
        }}""",
    )

    assert refused(answer)[1] == "NOT_PROMOTED"
    assert await snapshot(db) == before  # the staging deploy rolled back with the request
    async with db.read() as session:
        rows = list(await session.scalars(select(AuditEvent)))
    assert [(r.action, r.decision, r.door, r.actor) for r in rows] == [
        ("deploy", "refused", "api", "ci@example.com")
    ]
    assert rows[0].reason == refused(answer)[0]
    [listed] = await audit(api)
    assert (listed["environment"], listed["version"]) == ("production", RC2)
