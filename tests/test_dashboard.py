"""The dashboard in a real browser (Debian's Chromium through Playwright) against the real app
on a loopback server: a release manager signs in with a token, reads the matrix, deploys a
candidate, watches its status turn `success` live as a PATCH reports it, rolls back through the
dialog, freezes and sees the deploy refused with the reason, and signs out. axe checks every
page; every action is done from the keyboard. The screenshots in docs/ come from this run:
the clock is fixed and the database fresh (the same ids), and each picture is taken once the
page is live, so an unchanged dashboard gives the same bytes and `git status` stays clean."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, async_playwright, expect

from api.dashboard.live import SESSION_CHECK_SECONDS
from api.keys import SERVICE
from bot.github.outbound.worker import OutboxWorker
from tests.conftest import SHA_A, SHA_B, SHA_C, Api, TestClock, make_token
from tests.fake_github import FakeGitHub
from tests.test_github_register import CHROMIUM, chromium_installed

DOCS = Path(__file__).resolve().parent.parent / "docs"
# The demo's clock: every time the screenshots show is this one, or a fixed step from it.
DEMO_TIME = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
LIVE_WITHIN_MS = 2000
BLOCKING = ("serious", "critical")
# Focus the focusable element before `el` in document order, so one Tab lands on `el`.
FOCUS_BEFORE = """el => {
  const all = [...document.querySelectorAll('a[href], button, input:not([type=hidden])')];
  const before = all[all.indexOf(el) - 1];
  if (before) { before.focus(); } else { document.body.focus(); }
}"""


@pytest.fixture
def clock() -> TestClock:
    """The service's clock, fixed at DEMO_TIME (moved only by the test)."""
    fixed = TestClock()
    fixed.now = DEMO_TIME
    return fixed


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not chromium_installed():
        pytest.fail(
            f"{CHROMIUM} is missing (the dashboard tests drive it): apt-get install chromium"
        )
    async with async_playwright() as playwright:
        # Debian's Chromium, never a browser Playwright would download.
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        await launched.close()


async def accessible(page: Page, axe: Axe) -> None:
    results = await axe.run(page)
    blocking = [v for v in results.response["violations"] if v["impact"] in BLOCKING]
    assert blocking == [], results.generate_report()


async def screenshot(page: Page, name: str) -> None:
    """docs/<name>.png, once the page's stream is open (the corner says "live", not
    "connecting")."""
    await expect(page.locator("#live-state")).to_have_text("live")
    await page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)


async def press(page: Page, selector: str, key: str = "Enter") -> None:
    """Reach a control from the keyboard and press it: focus moves there by Tab from the
    element before it, so the control is in the tab order."""
    control = page.locator(selector)
    await control.evaluate(FOCUS_BEFORE)
    await page.keyboard.press("Tab")
    await expect(control).to_be_focused()
    await page.keyboard.press(key)


async def seed(api: Api, clock: TestClock) -> None:
    """Demo-like history over a week: two versions out, a third ready (it failed on staging),
    a deploy of the frontend under way."""
    await api.ship("staging", "v1.0.0-rc1", SHA_A)
    clock.advance(hours=2)
    await api.ship("production", "v1.0.0-rc1", SHA_A)
    clock.advance(days=3)
    await api.ship("staging", "v1.1.0-rc1", SHA_B)
    clock.advance(days=2, hours=5)
    created = await api.create_rc("v1.2.0-rc1", SHA_C)
    assert created.status == 201, created.body
    failed = await api.deploy("staging", "v1.2.0-rc1")
    assert failed.status == 201
    clock.advance(minutes=4, seconds=12)
    assert (await api.report("staging", "v1.2.0-rc1", "failure")).status == 200
    clock.advance(hours=1)
    await api.ship("production", "v1.0.0-rc1", SHA_A)
    clock.advance(minutes=20)
    await api.create_rc("v1.0.0-rc1", SHA_A, project="Frontend", repo="acme/monorepo")
    assert (await api.deploy("production", "v1.0.0-rc1", project="Frontend")).status == 201
    clock.advance(minutes=3)


async def test_release_manager_signs_in_deploys_watches_rolls_back_freezes_and_signs_out(
    client: TestClient[Any, Any], api: Api, browser: Browser, clock: TestClock
) -> None:
    await seed(api, clock)
    db = client.app[SERVICE].db
    token = await make_token(db, "release-manager", actor="rm@example.com")
    base = str(client.make_url("/")).rstrip("/")
    axe = Axe()
    page = await browser.new_page(viewport={"width": 1280, "height": 900})

    # Sign in: the overview sends a stranger to the sign-in page.
    await page.goto(base + "/")
    await expect(page).to_have_url(base + "/sign-in")
    await accessible(page, axe)
    await page.locator("#token").fill(token)
    await page.locator("#token").press("Enter")
    await expect(page).to_have_url(base + "/")

    # The matrix: what runs where, what is deploying, the last failure.
    staging = page.locator('tr[data-environment="Backend/staging"]')
    await expect(staging.locator(".running")).to_contain_text("v1.1.0-rc1")
    await expect(staging.locator(".failure")).to_contain_text("v1.2.0-rc1 failure")
    frontend = page.locator('tr[data-environment="Frontend/production"]')
    await expect(frontend.locator(".active")).to_contain_text("v1.0.0-rc1 pending")
    await accessible(page, axe)
    await screenshot(page, "dashboard-overview")

    # Deploy the newest candidate to production from its page, by keyboard.
    await page.goto(base + "/projects/Backend/candidates/v1.2.0-rc1")
    await expect(page.locator("#build")).to_contain_text("ready")
    await accessible(page, axe)
    await screenshot(page, "dashboard-candidate")
    await press(page, "#deploy-production")
    await expect(page.locator("#notice")).to_have_text("Deploying v1.2.0-rc1 to production")

    # Its status turns success live, without a reload, as the pipeline reports it.
    await page.goto(base + "/projects/Backend/environments/production")
    await expect(page.locator("#active")).to_contain_text("v1.2.0-rc1 pending")
    await expect(page.locator("#live-state")).to_have_text("live")
    clock.advance(seconds=5)
    assert (await api.report("production", "v1.2.0-rc1", "success")).status == 200
    await expect(page.locator("#running")).to_contain_text("v1.2.0-rc1", timeout=LIVE_WITHIN_MS)
    await expect(page.locator("#active")).to_have_text("nothing")
    assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1

    # Roll back through the dialog: it names the target the rule picks before confirming.
    await press(page, "#rollback-open", key=" ")
    dialog = page.locator("#rollback-dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.locator("#rollback-target")).to_contain_text("v1.0.0-rc1")
    await accessible(page, axe)
    await screenshot(page, "dashboard-environment")
    await expect(page.locator("#rollback-confirm")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#notice")).to_have_text("Rolling production back to v1.0.0-rc1")
    history = page.locator("table.history tbody tr").first
    await expect(history).to_contain_text("v1.2.0-rc1 → v1.0.0-rc1")
    await expect(history).to_contain_text("rollback")
    await expect(history).to_contain_text("rm@example.com")

    # Freeze, then the deploy button refuses with the reason.
    await page.locator("#freeze-reason").fill("Quarterly close")
    await press(page, "#freeze")
    await expect(page.locator("#notice")).to_have_text("production is frozen")
    await expect(page.locator("#frozen")).to_have_text("yes: Quarterly close (by rm@example.com)")
    await expect(page.locator("#unfreeze")).to_be_visible()
    await page.goto(base + "/projects/Backend/candidates/v1.2.0-rc1")
    await press(page, "#deploy-production")
    await expect(page.locator("#notice")).to_have_text(
        "Environment is frozen: Quarterly close (frozen by rm@example.com)"
    )
    await accessible(page, axe)

    # Sign out: the session is gone, the overview asks for a token again.
    await press(page, "#sign-out")
    await expect(page).to_have_url(base + "/sign-in")
    await page.goto(base + "/")
    await expect(page).to_have_url(base + "/sign-in")


async def test_a_pending_change_report_fills_in_live(
    github_client: TestClient[Any, Any],
    github_api: Api,
    outbox: OutboxWorker,
    fake_github: FakeGitHub,
    browser: Browser,
) -> None:
    history = fake_github.history("acme/backend")
    await github_api.ship("production", "v1-rc1", history.tip or "")
    history.merge_pull_request("Faster search", [["search.py"]])
    created = await github_api.create_rc("v1-rc2", history.tip or "")
    assert created.status == 201, created.body
    token = await make_token(github_client.app[SERVICE].db, "rm", actor="rm@example.com")
    base = str(github_client.make_url("/")).rstrip("/")
    page = await browser.new_page()
    await page.goto(base + "/sign-in")
    await page.locator("#token").fill(token)
    await page.locator("#sign-in").click()

    await page.goto(base + "/projects/Backend/candidates/v1-rc2")
    production = page.locator('section[data-environment="production"]')
    await expect(production.locator(".pending")).to_have_text(
        "The change report is being fetched from GitHub"
    )
    await expect(page.locator('section[data-environment="staging"]')).to_contain_text(
        "Nothing is running in the environment"
    )
    await expect(page.locator("#live-state")).to_have_text("live")
    await accessible(page, Axe())

    await outbox.drain()  # the worker fetches the report from GitHub

    await expect(production.locator(".ships")).to_contain_text(
        "Deploying this here ships 1 pull request", timeout=LIVE_WITHIN_MS
    )
    await expect(production).to_contain_text("Faster search")
    assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1


# Every EventSource a page opens, kept where the test can see whether it is still open.
RECORD_STREAMS = """(() => {
  const Original = window.EventSource;
  window.streams = [];
  window.EventSource = function (url, options) {
    const source = new Original(url, options);
    window.streams.push(source);
    return source;
  };
  window.EventSource.prototype = Original.prototype;
  Object.assign(window.EventSource, { CONNECTING: 0, OPEN: 1, CLOSED: 2 });
})();"""


async def test_a_page_signed_out_in_another_tab_says_so_and_stops_updating(
    client: TestClient[Any, Any], api: Api, browser: Browser
) -> None:
    await api.ship("staging", "v1.0.0-rc1", SHA_A)
    token = await make_token(client.app[SERVICE].db, "release-manager", actor="rm@example.com")
    base = str(client.make_url("/")).rstrip("/")
    context = await browser.new_context()  # one cookie jar: two tabs of one browser
    await context.add_init_script(RECORD_STREAMS)
    page = await context.new_page()
    await page.goto(base + "/sign-in")
    await page.locator("#token").fill(token)
    await page.locator("#sign-in").click()
    await expect(page).to_have_url(base + "/")
    staging = page.locator('tr[data-environment="Backend/staging"]')
    await expect(staging.locator(".running")).to_contain_text("v1.0.0-rc1")
    await expect(page.locator("#live-state")).to_have_text("live")

    other = await context.new_page()
    await other.goto(base + "/projects/Backend/environments/staging")
    await other.locator("#sign-out").click()
    await expect(other).to_have_url(base + "/sign-in")

    notice = page.locator("#signed-out")
    await expect(notice).to_have_text(
        "Signed out: sign in again", timeout=(SESSION_CHECK_SECONDS + 2) * 1000
    )
    await expect(notice.get_by_role("link", name="sign in again")).to_have_attribute(
        "href", "/sign-in"
    )
    await expect(page.locator("#live-state")).to_have_text("signed out")
    # What it showed stays; its stream is closed, never to reconnect; it was never reloaded.
    await expect(staging.locator(".running")).to_contain_text("v1.0.0-rc1")
    await page.wait_for_function(
        "window.streams.length === 1 && window.streams[0].readyState === 2"
    )
    assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
    await accessible(page, Axe())
    await context.close()
