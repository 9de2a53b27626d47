"""The release policy on the dashboard, in a real browser (Debian's Chromium through
Playwright) against the real app: a calendar window's freeze shows "frozen until" and the
deploy button refuses with the calendar's reason, and a forced deploy with a reason goes
through; two people approve a deployment with the buttons and its workflow is dispatched
once; where the rule names a team only its members (asked of GitHub) may; a candidate marked
bad is refused and the audit page lists both; a GitHub reader sees no policy button and their
forged POSTs are refused, a writer cannot force. Every action goes
through bot/app/operations.py with door `dashboard` (the audit rows say so). axe checks the
new and changed pages."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, expect

from api.dashboard.actions import NEEDS_FORCE_ROLE, NEEDS_WRITE
from api.keys import SERVICE
from bot.github.outbound.worker import OutboxWorker
from bot.storage.projects import find_project
from bot.storage.releases import find_release_candidate
from tests.conftest import SHA_A, SHA_B, Api, TestClock, make_token
from tests.fake_github import FakeGitHub
from tests.test_dashboard import accessible, browser, press
from tests.test_dashboard_github import (
    base_of,
    github_web,
    oauth_api,
    oauth_client,
    sign_in_with_github,
)
from tests.test_dashboard_safety import form_fields, sign_in

__all__ = ["browser", "github_web", "oauth_api", "oauth_client"]  # fixtures, shared

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
        approvals:
          required: 2
      - name: canary
        approvals:
          required: 1
          from: ["@acme/release-managers"]
      - name: demo
        requires: [staging]
        soak_minutes: 60
        freezes:
          - name: weekend
            reason: No deploys over the weekend
            timezone: America/New_York
            rrule: FREQ=WEEKLY;BYDAY=FR;BYHOUR=17;BYMINUTE=0
            duration: 64h
"""
# Friday 2026-03-06 18:00 in New York (EST): the weekend window is on, and ends on Monday
# 09:00 EDT, daylight saving time having begun on the Sunday between.
FRIDAY_EVENING = datetime(2026, 3, 6, 23, 0, tzinfo=UTC)
FROZEN_UNTIL = "Monday 2026-03-09 09:00 EDT (America/New_York)"
CALENDAR_REFUSAL = (
    f"Environment is frozen until {FROZEN_UNTIL} by its calendar window 'weekend': No deploys "
    "over the weekend; deploy with force and a reason to override it"
)
DISPATCHES = r"/actions/workflows/deploy\.yml/dispatches$"


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(POLICY_YAML)
    return path


async def signed_in_page(browser: Browser, base: str, token: str) -> tuple[BrowserContext, Page]:
    """A browser of its own, signed in with `token`."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(base + "/sign-in")
    await page.locator("#token").fill(token)
    await page.locator("#token").press("Enter")
    await expect(page).to_have_url(base + "/")
    return context, page


def audit_row(page: Page, decision: str) -> Any:
    return page.locator(f'table.audit tbody tr[data-decision="{decision}"]')


async def test_a_calendar_freeze_shows_until_when_refuses_the_deploy_and_force_overrides_it(
    client: TestClient[Any, Any], api: Api, browser: Browser, clock: TestClock
) -> None:
    clock.now = FRIDAY_EVENING
    assert (await api.ship("staging", "v1-rc1")).status == 200
    clock.advance(hours=2)  # soaked in staging: only the calendar stands in the way
    token = await make_token(client.app[SERVICE].db, "rm", actor="rm@example.com")
    base = base_of(client)
    axe = Axe()
    context, page = await signed_in_page(browser, base, token)

    await page.goto(base + "/projects/Backend/environments/demo")
    await expect(page.locator("#calendar")).to_have_text(
        f"frozen until {FROZEN_UNTIL} (window weekend: No deploys over the weekend)"
    )
    await expect(page.locator("#next-window")).to_have_text(
        "weekend, Friday 2026-03-13 17:00 EDT (America/New_York) until "
        "Monday 2026-03-16 09:00 EDT (America/New_York)"
    )
    await expect(page.locator("#policy-requires")).to_have_text(
        "after staging, soaked there 60 minutes"
    )
    await expect(page.locator("#policy-windows")).to_have_text(
        "weekend: every Friday at 17:00 for 64 hours (America/New_York): "
        "No deploys over the weekend"
    )
    await accessible(page, axe)

    # The candidate page's button: refused with the calendar's reason, as the API words it.
    await page.goto(base + "/projects/Backend/candidates/v1-rc1")
    await press(page, "#deploy-demo")
    await expect(page.locator("#notice")).to_have_text(CALENDAR_REFUSAL)
    assert (await api.deployments("demo")).body == []

    # Forced, with a reason, from the environment page: it goes through, and says so.
    await page.goto(base + "/projects/Backend/environments/demo")
    await page.locator("#deploy-version").fill("v1-rc1")
    await page.locator("#deploy-force").check()
    await expect(page.locator("#deploy-reason")).to_have_attribute("required", "")
    await page.locator("#deploy-reason").fill("Hotfix for INC-42")
    await press(page, "#deploy")
    await expect(page.locator("#notice")).to_have_text("Deploying v1-rc1 to demo (forced)")
    [forced] = (await api.deployments("demo")).body
    assert forced["actor"] == "rm@example.com"

    await page.locator("#audit-link").click()
    await expect(page).to_have_url(base + "/projects/Backend/audit?environment=demo")
    refused, allowed = audit_row(page, "refused"), audit_row(page, "forced")
    await expect(refused).to_contain_text("dashboard")
    await expect(refused).to_contain_text(CALENDAR_REFUSAL)
    await expect(allowed).to_contain_text("rm@example.com")
    await expect(allowed).to_contain_text(f"Hotfix for INC-42 (overrode: {CALENDAR_REFUSAL})")
    await accessible(page, axe)
    await context.close()


async def test_two_people_approve_with_the_buttons_and_the_workflow_is_dispatched_once(
    github_client: TestClient[Any, Any],
    github_api: Api,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    browser: Browser,
) -> None:
    assert (await github_api.create_rc("v1-rc1", SHA_A)).status == 201
    asked = await github_api.deploy("production", "v1-rc1")  # by ci@example.com
    assert asked.status == 201, asked.body
    await outbox.drain()
    assert fake_github.calls_to("POST", DISPATCHES) == []
    db = github_client.app[SERVICE].db
    base = base_of(github_client)
    axe = Axe()

    # The one who asked sees no Approve button (and may still reject their own).
    requester = await sign_in(github_client, github_api.token or "")
    async with requester, requester.get("/projects/Backend/environments/production") as answer:
        own = await answer.text()
    assert 'id="approval-state"' in own
    assert 'id="approve"' not in own
    assert 'id="reject"' in own

    alice, alice_page = await signed_in_page(
        browser, base, await make_token(db, "alice", actor="alice@example.com")
    )
    await alice_page.goto(base + "/projects/Backend/environments/production")
    await expect(alice_page.locator("#active")).to_contain_text(
        "v1-rc1 pending waiting for approval (0 of 2)"
    )
    await expect(alice_page.locator("#policy-approvals")).to_have_text(
        "2 from anyone who may deploy here, never the one who asked; each counts 24 hours"
    )
    await expect(alice_page.locator("#approval-state")).to_have_text(
        "v1-rc1, asked for by ci@example.com: approval (0 of 2)."
    )
    await accessible(alice_page, axe)
    await press(alice_page, "#approve")
    await expect(alice_page.locator("#notice")).to_have_text(
        "Approved v1-rc1 to production: waiting for approval (1 of 2)"
    )
    await expect(alice_page.locator("#approval-state")).to_have_text(
        "v1-rc1, asked for by ci@example.com: approval (1 of 2); approved by alice@example.com."
    )
    assert await alice_page.locator("#approve").count() == 0  # hers counts already
    await outbox.drain()
    assert fake_github.calls_to("POST", DISPATCHES) == []

    bob, bob_page = await signed_in_page(
        browser, base, await make_token(db, "bob", actor="bob@example.com")
    )
    await bob_page.goto(base + "/projects/Backend/environments/production")
    await press(bob_page, "#approve")
    await expect(bob_page.locator("#notice")).to_have_text(
        "Approved v1-rc1 to production: it deploys now"
    )
    await expect(bob_page.locator("#approval-state")).to_have_count(0)
    await outbox.drain()
    await outbox.drain()
    [dispatch] = fake_github.calls_to("POST", DISPATCHES)
    assert dispatch.body["inputs"]["tarmac_deployment_id"] == str(asked.body["id"])

    await bob_page.goto(base + "/projects/Backend/audit")
    await expect(audit_row(bob_page, "approved")).to_have_count(2)
    await expect(audit_row(bob_page, "approved").first).to_contain_text(
        "dashboard bob@example.com approve approved production v1-rc1"
    )
    await expect(audit_row(bob_page, "waiting")).to_contain_text("api ci@example.com deploy")
    await bob_page.locator("#audit-environment").select_option("staging")
    await bob_page.locator("#audit-show").click()
    await expect(bob_page).to_have_url(base + "/projects/Backend/audit?environment=staging")
    await expect(bob_page.locator("table.audit tbody")).to_have_text("Nothing recorded yet.")
    await accessible(bob_page, axe)
    await alice.close()
    await bob.close()


async def test_a_rejected_deployment_is_canceled_with_the_reason(
    client: TestClient[Any, Any], api: Api, browser: Browser
) -> None:
    assert (await api.create_rc("v1-rc1", SHA_A)).status == 201
    assert (await api.deploy("production", "v1-rc1")).status == 201
    token = await make_token(client.app[SERVICE].db, "rm", actor="rm@example.com")
    context, page = await signed_in_page(browser, base_of(client), token)
    await page.goto(base_of(client) + "/projects/Backend/environments/production")
    await page.locator("#reject-reason").fill("Not during the incident")
    await press(page, "#reject")
    await expect(page.locator("#notice")).to_have_text(
        "Rejected v1-rc1 to production: Not during the incident"
    )
    [rejected] = (await api.deployments("production")).body
    assert rejected["status"] == "canceled"
    assert rejected["error_message"] == "Rejected by rm@example.com: Not during the incident"
    await context.close()


async def test_a_candidate_marked_bad_is_refused_listed_in_the_audit_and_cleared(
    client: TestClient[Any, Any], api: Api, browser: Browser
) -> None:
    assert (await api.create_rc("v1-rc1", SHA_A)).status == 201
    token = await make_token(client.app[SERVICE].db, "rm", actor="rm@example.com")
    base = base_of(client)
    axe = Axe()
    context, page = await signed_in_page(browser, base, token)
    await page.goto(base + "/projects/Backend/candidates/v1-rc1")
    await page.locator("#bad-reason").fill("Corrupts the <cache>")
    await press(page, "#mark-bad")
    await expect(page.locator("#notice")).to_have_text("v1-rc1 is marked bad: Corrupts the <cache>")
    await expect(page.locator("#bad-mark")).to_contain_text(
        "Marked bad by rm@example.com: Corrupts the <cache>"
    )
    await accessible(page, axe)

    await press(page, "#deploy-staging")
    refusal = (
        "Release candidate is marked bad by rm@example.com: Corrupts the <cache>; clear the "
        "mark to deploy it"
    )
    await expect(page.locator("#notice")).to_have_text(refusal)
    assert (await api.deployments("staging")).body == []

    await page.locator("#audit-link").click()
    await expect(page).to_have_url(base + "/projects/Backend/audit")
    await expect(audit_row(page, "marked")).to_contain_text(
        "dashboard rm@example.com mark bad marked v1-rc1 Corrupts the <cache>"
    )
    await expect(audit_row(page, "refused")).to_contain_text(
        f"dashboard rm@example.com deploy refused staging v1-rc1 {refusal}"
    )

    await page.goto(base + "/projects/Backend/candidates/v1-rc1")
    await press(page, "#clear-bad")
    await expect(page.locator("#notice")).to_have_text("v1-rc1 is no longer marked bad")
    await expect(page.locator("#bad-mark")).to_have_count(0)
    await press(page, "#deploy-staging")
    await expect(page.locator("#notice")).to_have_text("Deploying v1-rc1 to staging")
    await context.close()


async def test_a_reader_sees_no_policy_button_and_their_forged_posts_change_nothing(
    oauth_client: TestClient[Any, Any],
    oauth_api: Api,
    fake_github: FakeGitHub,
    browser: Browser,
) -> None:
    assert (await oauth_api.create_rc("v1-rc1", SHA_A)).status == 201
    assert (await oauth_api.deploy("production", "v1-rc1")).status == 201
    fake_github.grant("acme/backend", "reader", "read")
    fake_github.grant("acme/backend", "writer", "write")
    base = base_of(oauth_client)
    context, page = await sign_in_with_github(browser, fake_github, base, "reader")

    await page.goto(base + "/projects/Backend/environments/production")
    await expect(page.locator("#approval-state")).to_contain_text("approval (0 of 2)")
    for control in ("#approve", "#reject", "#deploy", "#deploy-force", "#rollback-force"):
        assert await page.locator(control).count() == 0, control
    await page.goto(base + "/projects/Backend/candidates/v1-rc1")
    for control in ("#mark-bad", "#clear-bad"):
        assert await page.locator(control).count() == 0, control
    await accessible(page, Axe())

    csrf = await page.locator("form.sign-out input[name=csrf]").get_attribute("value")
    [waiting] = (await oauth_api.deployments("production")).body
    forged = {
        "/projects/Backend/environments/production/approve": {"deployment_id": waiting["id"]},
        "/projects/Backend/environments/production/reject": {
            "deployment_id": waiting["id"],
            "reason": "forged",
        },
        "/projects/Backend/candidates/v1-rc1/mark-bad": {"reason": "forged"},
        "/projects/Backend/candidates/v1-rc1/clear-bad": {},
    }
    for number, (path, fields) in enumerate(forged.items()):
        answer = await page.request.post(
            base + path,
            form={"csrf": csrf or "", "idempotency_key": f"forged-{number}", **fields},
            max_redirects=0,
        )
        assert answer.status == 403, path
        assert await answer.text() == NEEDS_WRITE
    [still] = (await oauth_api.deployments("production")).body
    assert still["status"] == "pending"
    assert still["waiting_for"] == "approval (0 of 2)"
    assert await bad_mark_of(oauth_client, "v1-rc1") is None
    audit = await audit_text(oauth_client, oauth_api)
    assert "forged" not in audit
    await context.close()

    # A writer sees the deploy form without Force, and forcing is refused with the rule.
    context, page = await sign_in_with_github(browser, fake_github, base, "writer")
    await page.goto(base + "/projects/Backend/environments/demo")
    await expect(page.locator("#deploy")).to_be_visible()
    assert await page.locator("#deploy-force").count() == 0
    csrf = await page.locator("form.sign-out input[name=csrf]").get_attribute("value")
    answer = await page.request.post(
        base + "/projects/Backend/environments/demo/deploy",
        form={
            "csrf": csrf or "",
            "idempotency_key": "forged-force",
            "version": "v1-rc1",
            "force": "1",
            "reason": "because",
        },
        max_redirects=0,
    )
    assert answer.status == 403
    assert await answer.text() == NEEDS_FORCE_ROLE
    assert (await oauth_api.deployments("demo")).body == []
    await context.close()


async def test_only_a_member_of_the_team_the_rule_names_may_approve(
    oauth_client: TestClient[Any, Any],
    oauth_api: Api,
    fake_github: FakeGitHub,
    browser: Browser,
) -> None:
    assert (await oauth_api.create_rc("v1-rc1", SHA_A)).status == 201
    assert (await oauth_api.deploy("canary", "v1-rc1")).status == 201
    fake_github.grant("acme/backend", "writer", "write")
    fake_github.grant("acme/backend", "member", "write")
    fake_github.add_team_member("acme/release-managers", "member")
    base = base_of(oauth_client)
    here = base + "/projects/Backend/environments/canary"

    # A writer outside the team: no button, and their forged approval is refused and audited.
    context, page = await sign_in_with_github(browser, fake_github, base, "writer")
    await page.goto(here)
    await expect(page.locator("#approval-state")).to_contain_text("approval (0 of 1)")
    assert await page.locator("#approve").count() == 0
    assert await page.locator("#reject").count() == 0
    csrf = await page.locator("form.sign-out input[name=csrf]").get_attribute("value")
    [waiting] = (await oauth_api.deployments("canary")).body
    answer = await page.request.post(
        here + "/approve",
        form={
            "csrf": csrf or "",
            "idempotency_key": "not-a-member",
            "deployment_id": waiting["id"],
        },
        max_redirects=0,
    )
    assert answer.status == 303
    await page.goto(here)
    await expect(page.locator("#notice")).to_have_text(
        "You may not approve deployments to this environment: approvals here come from "
        "@acme/release-managers"
    )
    await context.close()

    context, page = await sign_in_with_github(browser, fake_github, base, "member")
    await page.goto(here)
    await press(page, "#approve")
    await expect(page.locator("#notice")).to_have_text("Approved v1-rc1 to canary: it deploys now")
    memberships = fake_github.calls_to("GET", r"/orgs/acme/teams/release-managers/memberships/")
    assert {c.path.rsplit("/", 1)[1] for c in memberships} == {"writer", "member"}
    await page.goto(base + "/projects/Backend/audit?environment=canary")
    await expect(audit_row(page, "refused")).to_contain_text("dashboard writer approve refused")
    await expect(audit_row(page, "approved")).to_contain_text("dashboard member approve approved")
    await context.close()


async def bad_mark_of(client: TestClient[Any, Any], version: str) -> str | None:
    async with client.app[SERVICE].db.read() as session:
        project = await find_project(session, "Backend")
        return (await find_release_candidate(session, project, version)).rejected_reason


async def audit_text(client: TestClient[Any, Any], api: Api) -> str:
    session = await sign_in(client, api.token or "")
    async with session, session.get("/projects/Backend/audit") as answer:
        assert answer.status == 200
        return await answer.text()


# --- over plain HTTP ---------------------------------------------------------------------


ROWS = re.compile(r'<tr data-audit="(\d+)"')


@pytest.mark.both_databases
async def test_the_audit_is_paged_filtered_by_environment_and_escaped(
    client: TestClient[Any, Any], api: Api
) -> None:
    assert (await api.create_rc("v2-rc1", SHA_B)).status == 201
    hostile = '<script>alert("x")</script>'
    session = await sign_in(client, api.token or "")
    async with session:
        fields = await form_fields(session, "/projects/Backend/candidates/v2-rc1")
        async with session.post(
            "/projects/Backend/candidates/v2-rc1/mark-bad",
            data={**fields, "reason": hostile},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 303
        for _ in range(26):  # refused deploys of a bad candidate, each one audited
            fields = await form_fields(session, "/projects/Backend/candidates/v2-rc1")
            async with session.post(
                "/projects/Backend/environments/staging/deploy",
                data={**fields, "version": "v2-rc1", "back": "candidate"},
                allow_redirects=False,
            ) as answer:
                assert answer.status == 303

        async with session.get("/projects/Backend/audit") as answer:
            first = await answer.text()
        assert len(ROWS.findall(first)) == 25
        assert 'href="/projects/Backend/audit?page=2" rel="next"' in first
        assert hostile not in first
        async with session.get("/projects/Backend/audit?page=2") as answer:
            second = await answer.text()
        assert len(ROWS.findall(second)) == 2  # 1 mark and 26 refusals, 25 a page
        assert "&lt;script&gt;" in second
        assert not set(ROWS.findall(first)) & set(ROWS.findall(second))

        async with session.get("/projects/Backend/audit?environment=staging") as answer:
            staging = await answer.text()
        assert len(ROWS.findall(staging)) == 25
        assert "mark bad" not in staging  # a candidate's mark belongs to no environment
        async with session.get("/projects/Backend/audit?environment=production") as answer:
            assert "Nothing recorded yet." in await answer.text()
        async with session.get("/projects/Backend/audit?environment=nope") as answer:
            assert answer.status == 404
        async with session.get("/projects/Nope/audit") as answer:
            assert answer.status == 404


async def test_a_form_without_what_it_needs_changes_nothing(
    client: TestClient[Any, Any], api: Api
) -> None:
    assert (await api.ship("staging", "v1-rc1")).status == 200
    assert (await api.create_rc("v2-rc1", SHA_B)).status == 201
    assert (await api.deploy("production", "v1-rc1")).status == 201
    frozen = await api.put("/api/releases/Backend/environments/staging/freeze", {"reason": "x"})
    assert frozen.status == 200
    session = await sign_in(client, api.token or "")
    path = "/projects/Backend/environments"
    cases = [
        (f"{path}/staging/rollback", {"force": "1"}, "A forced deploy needs a reason"),
        (f"{path}/staging/deploy", {"version": "v2-rc1", "force": "1"}, "A forced deploy needs"),
        (f"{path}/production/reject", {"deployment_id": "0"}, "Rejecting a deployment needs"),
        ("/projects/Backend/candidates/v2-rc1/mark-bad", {}, "Marking a candidate bad needs"),
        (f"{path}/production/approve", {"deployment_id": "x"}, "Deployment not found"),
        ("/projects/Backend/candidates/v2-rc1/mark-bad", {"reason": "x" * 2001}, "at most 2000"),
        ("/projects/Backend/candidates/v2-rc1/mark-bad", {"reason": "a\x00b"}, "at most 2000"),
    ]
    async with session:
        for target, fields, said in cases:
            form = await form_fields(session, "/projects/Backend/environments/staging")
            async with session.post(target, data={**form, **fields}) as answer:
                assert answer.status == 200
                assert said in await answer.text(), target
    assert len((await api.deployments("staging")).body) == 1
    [waiting] = (await api.deployments("production")).body
    assert waiting["status"] == "pending"
    assert await bad_mark_of(client, "v2-rc1") is None
