"""The release policy through the REST API (docs/policy.md): promotion order and soak, force
with a reason, calendar windows in the environments listing, approvals by other tokens that
dispatch the deploy workflow once, candidates marked bad, and the audit that lists it all.

The real app on a loopback server, a real database, the test clock; the approvals' dispatch
goes through the outbox to the fake GitHub, which validates every call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import event

from api.keys import SERVICE
from bot.github.outbound.worker import OutboxWorker
from bot.storage.db import Database
from tests.conftest import SHA_A, SHA_B, SHA_C, Api, Reply, TestClock, make_token
from tests.fake_github import FakeGitHub

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
      - name: canary
        deploy_workflow: deploy.yml
        approvals:
          required: 2
      - name: store
        freezes:
          - name: weekend
            reason: No deploys over the weekend
            timezone: America/New_York
            rrule: FREQ=WEEKLY;BYDAY=FR;BYHOUR=17;BYMINUTE=0
            duration: 64h
  - name: Frontend
    repo: acme/monorepo
    environments:
      - name: production
"""
BACKEND = "/api/releases/Backend"
AUDIT = BACKEND + "/audit"
FORCE_NEEDS_REASON = {"error": "A forced deploy needs a reason: say why in 'reason'"}
# Friday 2026-03-06 18:00 in New York (EST), an hour into the weekend window; daylight saving
# time begins that Sunday, so the window ends Monday 09:00 EDT.
FRIDAY_EVENING = datetime(2026, 3, 6, 23, 0, tzinfo=UTC)


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(POLICY_YAML)
    return path


def environment(name: str) -> str:
    return f"{BACKEND}/environments/{name}"


async def deploy(
    api: Api, where: str, version: str, token: str | None = None, **extra: Any
) -> Reply:
    body = {"release_candidate_version": version, **extra}
    return await api.post(environment(where) + "/deployments", body, token=token)


async def approve(api: Api, where: str, deployment_id: int, token: str | None = None) -> Reply:
    return await api.post(f"{environment(where)}/deployments/{deployment_id}/approve", token=token)


async def report_success(api: Api, where: str, version: str) -> None:
    reported = await api.report(where, version, "success")
    assert reported.status == 200, reported.body


async def audit_of(api: Api, **params: str) -> list[dict[str, Any]]:
    reply = await api.get(AUDIT, params=params)
    assert reply.status == 200, reply.body
    events: list[dict[str, Any]] = reply.body
    return events


def decisions(events: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [(e["action"], e["decision"], e["actor"]) for e in events]


# --- promotion order, soak, force ------------------------------------------------------------


@pytest.mark.both_databases
async def test_a_candidate_goes_to_production_only_after_staging_and_its_soak(
    api: Api, clock: TestClock
) -> None:
    await api.create_rc("v1.0.0-rc1", SHA_A)
    await report_success(api, "staging", "v1.0.0-rc1")
    await report_success(api, "production", "v1.0.0-rc1")
    await api.create_rc("v1.0.0-rc2", SHA_B)

    before_staging = await deploy(api, "production", "v1.0.0-rc2")
    assert (await deploy(api, "staging", "v1.0.0-rc2")).status == 201
    await report_success(api, "staging", "v1.0.0-rc2")
    succeeded_at = clock.now
    soaking = await deploy(api, "production", "v1.0.0-rc2")
    clock.advance(minutes=45)
    still_soaking = await deploy(api, "production", "v1.0.0-rc2")
    clock.advance(minutes=15)
    soaked = await deploy(api, "production", "v1.0.0-rc2")

    assert (before_staging.status, before_staging.body) == (
        400,
        {
            "error": "v1.0.0-rc2 must succeed in staging before it goes to production (it runs "
            "v1.0.0-rc1); deploy it to staging first"
        },
    )
    ready_at = (succeeded_at + timedelta(minutes=60)).strftime("%Y-%m-%d %H:%M:%S")
    assert (soaking.status, soaking.body) == (
        400,
        {
            "error": "v1.0.0-rc2 has soaked in staging for 0 of the 60 minutes production "
            f"requires: it may go to production from {ready_at} UTC (60 minutes from now)"
        },
    )
    assert still_soaking.body["error"].startswith("v1.0.0-rc2 has soaked in staging for 45 of")
    assert still_soaking.body["error"].endswith("(15 minutes from now)")
    assert soaked.status == 201, soaked.body
    assert (soaked.body["release_candidate_version"], soaked.body["status"]) == (
        "v1.0.0-rc2",
        "pending",
    )
    production = await audit_of(api, environment="production")
    assert [(e["decision"], e["release_candidate_version"]) for e in production] == [
        ("allowed", "v1.0.0-rc2"),
        ("refused", "v1.0.0-rc2"),
        ("refused", "v1.0.0-rc2"),
        ("refused", "v1.0.0-rc2"),
    ]
    assert production[-1]["reason"] == before_staging.body["error"]


async def test_force_needs_a_reason_and_is_audited_as_forced_with_it(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1", SHA_A)

    without = await deploy(api, "production", "v1.0.0-rc1", force=True)
    blank = await deploy(api, "production", "v1.0.0-rc1", force=True, reason="   ")
    forced = await deploy(api, "production", "v1.0.0-rc1", force=True, reason="hotfix INC-42")

    assert (without.status, without.body) == (400, FORCE_NEEDS_REASON)
    assert (blank.status, blank.body) == (400, FORCE_NEEDS_REASON)
    assert forced.status == 201, forced.body
    assert (await api.deployments("production")).body == [forced.body]
    newest, *refusals = await audit_of(api, environment="production")
    assert (newest["action"], newest["decision"], newest["door"]) == ("deploy", "forced", "api")
    assert (newest["actor"], newest["deployment_id"]) == ("ci@example.com", forced.body["id"])
    assert newest["reason"] == (
        "hotfix INC-42 (overrode: v1.0.0-rc1 must succeed in staging before it goes to "
        "production (it runs none); deploy it to staging first)"
    )
    assert [(e["decision"], e["reason"]) for e in refusals] == [
        ("refused", FORCE_NEEDS_REASON["error"])
    ] * 2


# --- calendar windows -----------------------------------------------------------------------


async def test_the_listing_shows_the_window_in_effect_and_the_next_and_deploys_wait_for_it(
    api: Api, clock: TestClock
) -> None:
    clock.now = FRIDAY_EVENING
    await api.create_rc("v1.0.0-rc1", SHA_A)
    await report_success(api, "store", "v1.0.0-rc1")
    await api.create_rc("v1.0.0-rc2", SHA_B)

    during = {e["name"]: e for e in (await api.get(BACKEND + "/environments")).body}
    refused = await deploy(api, "store", "v1.0.0-rc2")
    rollback_without_reason = await api.rollback("store", force=True)
    clock.now = datetime(2026, 3, 9, 13, 1, tzinfo=UTC)  # Monday 09:01 EDT
    after = {e["name"]: e for e in (await api.get(BACKEND + "/environments")).body}
    allowed = await deploy(api, "store", "v1.0.0-rc2")

    store = during["store"]
    assert (store["frozen"], store["freeze"]) == (False, None)  # no manual freeze
    assert store["calendar_freeze"] == {
        "window": "weekend",
        "reason": "No deploys over the weekend",
        "until": "2026-03-09T13:00:00Z",
    }
    assert store["next_freeze"] == {
        "window": "weekend",
        "reason": "No deploys over the weekend",
        "starts_at": "2026-03-13T21:00:00Z",
        "ends_at": "2026-03-16T13:00:00Z",
    }
    assert (refused.status, refused.body) == (
        400,
        {
            "error": "Environment is frozen until Monday 2026-03-09 09:00 EDT "
            "(America/New_York) by its calendar window 'weekend': No deploys over the "
            "weekend; deploy with force and a reason to override it"
        },
    )
    assert (rollback_without_reason.status, rollback_without_reason.body) == (
        400,
        FORCE_NEEDS_REASON,
    )
    assert after["store"]["calendar_freeze"] is None
    assert after["store"]["next_freeze"]["starts_at"] == "2026-03-13T21:00:00Z"
    assert allowed.status == 201, allowed.body
    policies = {name: e["policy"] for name, e in during.items()}
    assert policies == {
        "staging": {"requires": [], "soak_minutes": 0, "approvals_required": 0},
        "production": {"requires": ["staging"], "soak_minutes": 60, "approvals_required": 0},
        "canary": {"requires": [], "soak_minutes": 0, "approvals_required": 2},
        "store": {"requires": [], "soak_minutes": 0, "approvals_required": 0},
    }
    assert [e["next_freeze"] for n, e in during.items() if n != "store"] == [None] * 3


async def test_a_rollback_during_a_window_goes_through_with_force_and_a_reason(
    api: Api, clock: TestClock
) -> None:
    clock.now = FRIDAY_EVENING - timedelta(hours=2)
    await api.ship("store", "v1.0.0-rc1")
    await api.ship("store", "v1.0.0-rc2", SHA_B)
    clock.now = FRIDAY_EVENING

    refused = await api.rollback("store")
    rolled_back = await api.post(
        environment("store") + "/rollback", {"force": True, "reason": "checkout is down"}
    )

    assert refused.status == 400
    assert refused.body["error"].startswith("Environment is frozen until Monday 2026-03-09")
    assert rolled_back.status == 201, rolled_back.body
    assert rolled_back.body["release_candidate_version"] == "v1.0.0-rc1"
    newest = (await audit_of(api, environment="store"))[0]
    assert (newest["action"], newest["decision"]) == ("rollback", "forced")
    assert newest["reason"].startswith("checkout is down (overrode: Environment is frozen until")


# --- approvals -------------------------------------------------------------------------------


def dispatches_of(fake_github: FakeGitHub, deployment_id: int) -> int:
    return sum(
        1
        for call in fake_github.calls_to("POST", r"/actions/workflows/deploy\.yml/dispatches$")
        if call.body["inputs"].get("tarmac_deployment_id") == str(deployment_id)
    )


@pytest.mark.both_databases
async def test_two_others_approve_and_the_workflow_is_dispatched_exactly_once(
    github_api: Api, db: Database, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    ana = await make_token(db, "ana", actor="ana@example.com")
    bo = await make_token(db, "bo", actor="bo@example.com")
    cy = await make_token(db, "cy", actor="cy@example.com")
    await github_api.create_rc("v1.0.0-rc1", SHA_A)
    asked = await deploy(github_api, "canary", "v1.0.0-rc1")
    deployment = asked.body["id"]
    await outbox.drain()
    before_approvals = dispatches_of(fake_github, deployment)

    own = await approve(github_api, "canary", deployment)
    first = await approve(github_api, "canary", deployment, token=ana)
    again = await approve(github_api, "canary", deployment, token=ana)
    await outbox.drain()
    after_one = dispatches_of(fake_github, deployment)
    last = await approve(github_api, "canary", deployment, token=bo)
    late = await approve(github_api, "canary", deployment, token=cy)
    await outbox.drain()
    await outbox.drain()

    assert asked.status == 201, asked.body
    assert (asked.body["status"], asked.body["waiting_for"]) == ("pending", "approval (0 of 2)")
    assert (asked.body["approvals_required"], asked.body["approvals"]) == (2, [])
    assert (before_approvals, after_one) == (0, 0)
    assert (own.status, own.body) == (
        400,
        {"error": "You cannot approve a deployment you asked for"},
    )
    assert first.status == 200, first.body
    assert first.body["waiting_for"] == "approval (1 of 2)"
    assert [a["approver"] for a in first.body["approvals"]] == ["ana@example.com"]
    assert again.body == first.body  # the same person again changes nothing
    assert last.status == 200, last.body
    assert (last.body["status"], last.body["waiting_for"]) == ("pending", None)
    assert [a["approver"] for a in last.body["approvals"]] == ["ana@example.com", "bo@example.com"]
    assert (late.status, late.body) == (400, {"error": "Deployment is not waiting for approval"})
    assert dispatches_of(fake_github, deployment) == 1
    # The approvals are in every answer about the deployment.
    one = await github_api.get(f"{environment('canary')}/deployments/{deployment}")
    listed = await github_api.deployments("canary")
    candidate = await github_api.get(BACKEND + "/releases/v1.0.0-rc1")
    assert one.body["approvals"] == last.body["approvals"]
    assert listed.body[0]["approvals"] == last.body["approvals"]
    assert candidate.body["deployments"][0]["approvals"] == last.body["approvals"]
    canary = await audit_of(github_api, environment="canary")
    assert decisions(canary) == [
        ("approve", "refused", "cy@example.com"),
        ("approve", "approved", "bo@example.com"),
        ("approve", "approved", "ana@example.com"),
        ("approve", "refused", "ci@example.com"),
        ("deploy", "waiting", "ci@example.com"),
    ]
    assert canary[3]["reason"] == own.body["error"]


async def test_an_approval_retried_with_its_key_is_answered_again_and_counted_once(
    api: Api, db: Database
) -> None:
    ana = await make_token(db, "ana", actor="ana@example.com")
    await api.create_rc("v1.0.0-rc1", SHA_A)
    deployment = (await deploy(api, "canary", "v1.0.0-rc1")).body["id"]
    path = f"{environment('canary')}/deployments/{deployment}/approve"
    key = {"Idempotency-Key": "approve-once"}

    first = await api.post(path, token=ana, headers=key)
    replayed = await api.post(path, token=ana, headers=key)

    assert first.status == replayed.status == 200
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.body == first.body
    assert [e["decision"] for e in await audit_of(api, environment="canary")] == [
        "approved",
        "waiting",
    ]


async def test_a_rejected_deployment_is_canceled_with_the_reason_and_never_runs(
    github_api: Api, db: Database, outbox: OutboxWorker, fake_github: FakeGitHub
) -> None:
    ana = await make_token(db, "ana", actor="ana@example.com")
    await github_api.create_rc("v1.0.0-rc1", SHA_A)
    deployment = (await deploy(github_api, "canary", "v1.0.0-rc1")).body["id"]
    path = f"{environment('canary')}/deployments/{deployment}/reject"

    without_reason = await github_api.post(path, {}, token=ana)
    rejected = await github_api.post(path, {"reason": "the migration is not reviewed"}, token=ana)
    again = await github_api.post(path, {"reason": "still no"}, token=ana)
    approved_after = await approve(github_api, "canary", deployment, token=ana)
    await outbox.drain()

    assert (without_reason.status, without_reason.body) == (
        400,
        {"error": "Missing field 'reason'"},
    )
    assert rejected.status == 200, rejected.body
    assert (rejected.body["status"], rejected.body["waiting_for"]) == ("canceled", None)
    assert rejected.body["error_message"] == (
        "Rejected by ana@example.com: the migration is not reviewed"
    )
    not_waiting = {"error": "Deployment is not waiting for approval"}
    assert (again.status, again.body) == (400, not_waiting)
    assert (approved_after.status, approved_after.body) == (400, not_waiting)
    assert dispatches_of(fake_github, deployment) == 0
    canary = await audit_of(github_api, environment="canary")
    assert decisions(canary) == [
        ("approve", "refused", "ana@example.com"),
        ("reject_deployment", "rejected", "ana@example.com"),
        ("deploy", "waiting", "ci@example.com"),
    ]
    assert (canary[1]["action"], canary[1]["decision"], canary[1]["reason"]) == (
        "reject_deployment",
        "rejected",
        "the migration is not reviewed",
    )


# --- bad candidates --------------------------------------------------------------------------


@pytest.mark.both_databases
async def test_a_candidate_marked_bad_is_refused_and_skipped_by_the_rollback_until_cleared(
    api: Api, clock: TestClock
) -> None:
    for version, commit in (("v1.0.0-rc1", SHA_A), ("v1.0.0-rc2", SHA_B), ("v1.0.0-rc3", SHA_C)):
        await api.ship("staging", version, commit)
    rc2 = BACKEND + "/releases/v1.0.0-rc2"

    marked = await api.post(rc2 + "/reject", {"reason": "corrupts invoices"})
    refused = await deploy(api, "staging", "v1.0.0-rc2")
    forced = await deploy(api, "staging", "v1.0.0-rc2", force=True, reason="I insist")
    shown = await api.get(rc2)
    listed = await api.get(BACKEND + "/releases")
    rolled_back = await api.rollback("staging")
    cleared = await api.delete(rc2 + "/reject")
    cleared_again = await api.delete(rc2 + "/reject")
    deployed = await deploy(api, "staging", "v1.0.0-rc2")

    assert marked.status == 200, marked.body
    mark = {"reason": "corrupts invoices", "by": "ci@example.com", "at": _iso(clock.now)}
    assert marked.body["rejected"] == mark
    bad = {
        "error": "Release candidate is marked bad by ci@example.com: corrupts invoices; clear "
        "the mark to deploy it"
    }
    assert (refused.status, refused.body) == (400, bad)
    assert (forced.status, forced.body) == (400, bad)
    assert shown.body["rejected"] == mark
    candidates = {c["version"]: c["rejected"] for c in listed.body[0]["release_candidates"]}
    assert candidates == {"v1.0.0-rc3": None, "v1.0.0-rc2": mark, "v1.0.0-rc1": None}
    assert rolled_back.status == 201, rolled_back.body
    assert rolled_back.body["release_candidate_version"] == "v1.0.0-rc1"  # past rc2
    assert (cleared.status, cleared.body["rejected"]) == (200, None)
    assert cleared_again.body == cleared.body
    assert deployed.status == 201, deployed.body
    everything = await audit_of(api, per_page="100")
    assert [(e["action"], e["decision"], e["environment_name"]) for e in everything[:6]] == [
        ("deploy", "allowed", "staging"),
        ("clear_bad", "cleared", None),
        ("rollback", "allowed", "staging"),
        ("deploy", "refused", "staging"),
        ("deploy", "refused", "staging"),
        ("mark_bad", "marked", None),
    ]
    assert everything[5]["reason"] == "corrupts invoices"
    assert everything[5]["release_candidate_version"] == "v1.0.0-rc2"
    # A candidate's marks belong to no environment: the staging filter leaves them out.
    staging = await audit_of(api, environment="staging", per_page="100")
    assert [e["id"] for e in staging] == [
        e["id"] for e in everything if e["environment_name"] == "staging"
    ]


async def test_marking_bad_with_a_key_twice_marks_once(api: Api) -> None:
    await api.create_rc("v1.0.0-rc1", SHA_A)
    path = BACKEND + "/releases/v1.0.0-rc1/reject"
    key = {"Idempotency-Key": "mark-1"}

    first = await api.post(path, {"reason": "broken"}, headers=key)
    replayed = await api.post(path, {"reason": "broken"}, headers=key)
    other_body = await api.post(path, {"reason": "other"}, headers=key)

    assert (first.status, replayed.status, other_body.status) == (200, 200, 422)
    assert replayed.body == first.body
    assert [e["action"] for e in await audit_of(api)] == ["mark_bad"]


# --- the audit listing -------------------------------------------------------------------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@contextmanager
def statements_sent(client: TestClient[Any, Any]) -> Iterator[list[tuple[str, Any]]]:
    """The SQL the app sends while the block runs, with its parameters."""
    engine = client.app[SERVICE].db.engine.sync_engine
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.mark.both_databases
async def test_the_audit_pages_newest_first_in_one_query_per_page(
    api: Api, client: TestClient[Any, Any]
) -> None:
    for n, commit in enumerate((SHA_A, SHA_B, SHA_C), start=1):
        await api.create_rc(f"v1.0.0-rc{n}", commit)
        await api.post(f"{BACKEND}/releases/v1.0.0-rc{n}/reject", {"reason": f"bad {n}"})
        await deploy(api, "staging", f"v1.0.0-rc{n}")  # refused: marked bad
        await api.delete(f"{BACKEND}/releases/v1.0.0-rc{n}/reject")
        await deploy(api, "canary", f"v1.0.0-rc{n}")  # waiting for approvals

    first = await api.get(AUDIT, params={"per_page": "5"})
    second = await api.get(AUDIT, params={"per_page": "5", "page": "2"})
    third = await api.get(AUDIT, params={"per_page": "5", "page": "3"})
    with statements_sent(api.client) as one_row:
        await api.get(AUDIT, params={"per_page": "1"})
    with statements_sent(api.client) as twelve_rows:
        everything = await api.get(AUDIT, params={"per_page": "50"})
    unknown = await api.get(AUDIT, params={"environment": "qa"})
    other_project = await api.get("/api/releases/Frontend/audit", params={"environment": "staging"})

    ids = [e["id"] for e in everything.body]
    assert len(ids) == 12  # for each candidate: marked, refused, cleared, waiting
    assert ids == sorted(ids, reverse=True)
    assert [e["id"] for e in first.body + second.body + third.body] == ids
    assert 'rel="next"' in first.headers["Link"]
    assert 'rel="next"' not in third.headers["Link"]
    assert len(twelve_rows) == len(one_row)  # names joined in, not looked up per row
    assert [e["environment_name"] for e in everything.body[:5]] == [
        "canary",
        None,
        "staging",
        None,
        "canary",
    ]
    assert everything.body[0]["release_candidate_version"] == "v1.0.0-rc3"
    assert (unknown.status, unknown.body) == (404, {"error": "Release environment not found"})
    assert other_project.status == 404


async def test_the_environment_filter_seeks_its_index(api: Api, db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("the SQLite planner's choice by the query's shape is what is checked")
    await api.create_rc("v1.0.0-rc1", SHA_A)
    await deploy(api, "canary", "v1.0.0-rc1")

    with statements_sent(api.client) as sent:
        await api.get(AUDIT, params={"environment": "canary"})

    ((listing, parameters),) = [(s, p) for s, p in sent if "FROM audit_events" in s]
    async with db.engine.connect() as connection:
        rows = (await connection.exec_driver_sql("EXPLAIN QUERY PLAN " + listing, parameters)).all()
    plan = "\n".join(str(row[-1]) for row in rows)
    assert "SEARCH audit_events USING INDEX ix_audit_events_environment_id_id" in plan, plan
    assert "SCAN audit_events" not in plan, plan
