"""Sign-in with GitHub against the fake GitHub (its OAuth web flow and `GET /user`), in a real
browser: a writer signs in, reads the matrix, deploys a candidate and watches it turn `success`
live as the fake's run completes (a signed `workflow_run` webhook); a reader sees no action
buttons and their forged POST is refused; a project whose repository they cannot read is not
shown at all; revoking the App's authorization on GitHub signs the person out. The grants
follow the PR commands' rule (unit tests at the end)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestClient
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, BrowserContext, Page, expect
from pydantic import SecretStr

from api.app import create_app
from api.dashboard.actions import NEEDS_WRITE
from api.dashboard.github_sign_in import CANCELED, STALE
from api.keys import SERVICE
from bot.domain.access import EVERY_ACT, Act
from bot.github.commands.permissions import Access, dashboard_grants
from bot.github.outbound.worker import OutboxWorker
from bot.settings import Settings
from tests.conftest import (
    PROJECTS_YAML,
    SHA_A,
    Api,
    TestClock,
    Webhooks,
    github_payload,
    make_token,
)
from tests.fake_github import FakeGitHub
from tests.leak_check import register_secret
from tests.test_cli import free_port
from tests.test_dashboard import LIVE_WITHIN_MS, accessible, browser, press
from tests.test_github_tags import accepted
from tests.test_github_workflow_runs import deploy_run_of, run_event

__all__ = ["browser"]  # the fixture, shared with tests/test_dashboard.py

PERMISSION_READS = r"/collaborators/[^/]+/permission$"


@pytest.fixture
def projects_file(tmp_path: Any) -> Any:
    """The usual projects, Backend without a build (an API candidate is ready at once)."""
    path = tmp_path / "tarmac.yml"
    path.write_text(PROJECTS_YAML.replace("    build:\n      workflow: build.yml\n", ""))
    return path


@pytest.fixture
async def github_web(aiohttp_server: Any, fake_github: FakeGitHub) -> AsyncIterator[str]:
    """The fake's github.com pages (the OAuth web flow) on their own address."""
    server = await aiohttp_server(fake_github.web_app())
    web_url = str(server.make_url("")).rstrip("/")
    fake_github.manifest_flow.web_url = web_url
    register_secret(fake_github.oauth_flow.client_secret)
    yield web_url
    for token in fake_github.oauth_flow.tokens:
        register_secret(token)


@pytest.fixture
async def oauth_client(
    aiohttp_client: Any,
    github_app_settings: Settings,
    github_web: str,
    fake_github: FakeGitHub,
    clock: TestClock,
) -> TestClient[Any, Any]:
    """The real app with the GitHub App's OAuth client, at the public URL its callback is
    registered under on the fake GitHub."""
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    flow = fake_github.oauth_flow
    flow.callback_urls = [public + "/auth/github/callback"]
    settings = github_app_settings.model_copy(
        update={
            "public_url": public,
            "github_url": github_web,
            "github_client_id": flow.client_id,
            "github_client_secret": SecretStr(flow.client_secret),
        }
    )
    fake_github.clock = clock
    app = create_app(settings, clock=clock, background_work=False)
    client: TestClient[Any, Any] = await aiohttp_client(app, server_kwargs={"port": port})
    return client


@pytest.fixture
def github_outbox(oauth_client: TestClient[Any, Any]) -> OutboxWorker:
    worker = oauth_client.app[SERVICE].outbox_worker
    assert worker is not None
    return worker


@pytest.fixture
async def oauth_api(oauth_client: TestClient[Any, Any], conformance: Any) -> Api:
    wrapped = Api(oauth_client, conformance)
    wrapped.token = await make_token(oauth_client.app[SERVICE].db, "ci", actor="ci@example.com")
    return wrapped


@pytest.fixture
def oauth_webhook(oauth_client: TestClient[Any, Any], conformance: Any) -> Webhooks:
    return Webhooks(oauth_client, conformance)


def base_of(client: TestClient[Any, Any]) -> str:
    return str(client.make_url("/")).rstrip("/")


async def sign_in_with_github(
    browser: Browser, fake: FakeGitHub, base: str, login: str
) -> tuple[BrowserContext, Page]:
    """A browser of its own whose person is signed in to github.com as `login`, through the
    sign-in page's "Sign in with GitHub"."""
    fake.add_user(login)
    fake.oauth_flow.user = login
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(base + "/")
    await expect(page).to_have_url(base + "/sign-in")
    await page.locator("#sign-in-github").click()
    await expect(page).to_have_url(base + "/")
    await expect(page.locator(".sign-out strong")).to_have_text(login)
    return context, page


async def test_a_writer_signs_in_with_github_deploys_and_watches_it_succeed_live(
    oauth_client: TestClient[Any, Any],
    oauth_api: Api,
    oauth_webhook: Webhooks,
    github_outbox: OutboxWorker,
    fake_github: FakeGitHub,
    browser: Browser,
    clock: TestClock,
) -> None:
    assert (await oauth_api.create_rc("v1-rc1", SHA_A)).status == 201
    fake_github.grant("acme/backend", "writer", "write")
    fake_github.grant("acme/monorepo", "writer", "write")
    base = base_of(oauth_client)
    axe = Axe()
    page = await (await browser.new_context()).new_page()
    await page.goto(base + "/sign-in")
    await expect(page.locator("#sign-in-github")).to_have_text("Sign in with GitHub")
    await accessible(page, axe)

    context, page = await sign_in_with_github(browser, fake_github, base, "writer")
    await expect(page.locator('tr[data-environment="Backend/production"]')).to_be_visible()
    await expect(page.locator('tr[data-environment="Frontend/production"]')).to_be_visible()

    await page.goto(base + "/projects/Backend/candidates/v1-rc1")
    await press(page, "#deploy-production")
    await expect(page.locator("#notice")).to_have_text("Deploying v1-rc1 to production")
    await github_outbox.drain()  # the deploy workflow is dispatched on the fake GitHub
    [deployment] = (await oauth_api.deployments("production")).body
    assert deployment["actor"] == "writer"
    run = deploy_run_of(fake_github, deployment["id"])

    await page.goto(base + "/projects/Backend/environments/production")
    await expect(page.locator("#active")).to_contain_text("v1-rc1")
    await expect(page.locator("#live-state")).to_have_text("live")
    clock.advance(seconds=5)
    await accepted(oauth_webhook, "workflow_run", run_event("completed", run, "success"))
    await expect(page.locator("#running")).to_contain_text("v1-rc1", timeout=LIVE_WITHIN_MS)
    await expect(page.locator("#active")).to_have_text("nothing")
    await expect(page.locator("table.history tbody tr").first).to_contain_text("writer")
    assert await page.evaluate("performance.getEntriesByType('navigation').length") == 1
    # Each repository's permission was read once for all those pages (cached a minute).
    reads = fake_github.calls_to("GET", PERMISSION_READS)
    assert sorted(c.path for c in reads) == [
        "/repos/acme/backend/collaborators/writer/permission",
        "/repos/acme/monorepo/collaborators/writer/permission",
    ]
    assert all(c.auth.startswith("installation:") for c in reads)

    await press(page, "#sign-out")
    await expect(page).to_have_url(base + "/sign-in")
    await context.close()


async def test_a_reader_sees_no_buttons_a_forged_post_is_refused_and_unreadable_is_unseen(
    oauth_client: TestClient[Any, Any],
    oauth_api: Api,
    fake_github: FakeGitHub,
    browser: Browser,
) -> None:
    assert (await oauth_api.create_rc("v1-rc1", SHA_A)).status == 201
    fake_github.grant("acme/backend", "reader", "read")  # acme/monorepo: none
    base = base_of(oauth_client)
    context, page = await sign_in_with_github(browser, fake_github, base, "reader")

    await expect(page.locator('tr[data-environment="Backend/production"]')).to_be_visible()
    assert "Frontend" not in await page.content()
    await page.goto(base + "/projects/Frontend/environments/production")
    await expect(page.locator("h1")).not_to_contain_text("Frontend")
    await page.goto(base + "/projects/Backend/candidates/v1-rc1")
    await expect(page.locator("#build")).to_be_visible()
    assert await page.locator("button[id^=deploy-]").count() == 0
    await page.goto(base + "/projects/Backend/environments/production")
    for control in ("#freeze", "#unfreeze", "#rollback-open", "#cancel"):
        assert await page.locator(control).count() == 0, control

    # Their own session's CSRF token on a deploy they may not do: refused with the rule.
    csrf = await page.locator("form.sign-out input[name=csrf]").get_attribute("value")
    answer = await page.request.post(
        base + "/projects/Backend/environments/production/deploy",
        form={"csrf": csrf or "", "idempotency_key": "forged-deploy-1", "version": "v1-rc1"},
        max_redirects=0,
    )
    assert answer.status == 403
    assert await answer.text() == NEEDS_WRITE
    assert (await oauth_api.deployments("production")).body == []
    frontend = await page.request.get(base + "/projects/Frontend/environments/production")
    assert frontend.status == 404
    assert "Frontend" not in re.sub(r"<title>.*</title>", "", await frontend.text())
    await context.close()


async def test_revoking_the_apps_authorization_on_github_signs_that_person_out(
    oauth_client: TestClient[Any, Any],
    oauth_webhook: Webhooks,
    fake_github: FakeGitHub,
    browser: Browser,
) -> None:
    """GitHub's own `github_app_authorization` example (octocat, user 1), signed, through the
    webhook endpoint: octocat's browser is signed out at its next page, another person's
    session stays, and octocat's permissions are asked of GitHub again when they return."""
    fake_github.users["octocat"] = 1  # the example's sender
    fake_github.grant("acme/backend", "octocat", "write")
    fake_github.grant("acme/backend", "writer", "write")
    base = base_of(oauth_client)
    octocat, octocat_page = await sign_in_with_github(browser, fake_github, base, "octocat")
    writer, writer_page = await sign_in_with_github(browser, fake_github, base, "writer")
    await expect(octocat_page.locator('tr[data-environment="Backend/production"]')).to_be_visible()
    octocat_reads = r"/collaborators/octocat/permission$"
    assert len(fake_github.calls_to("GET", octocat_reads)) == 2  # backend's, monorepo's

    revoked = github_payload("github_app_authorization", "revoked")
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    outcome = await accepted(
        oauth_webhook, "github_app_authorization", revoked, delivery_id=delivery
    )
    assert outcome == "authorization of GitHub user 1 revoked; 1 dashboard session ended"

    await octocat_page.goto(base + "/")
    await expect(octocat_page).to_have_url(base + "/sign-in")
    await writer_page.goto(base + "/")
    await expect(writer_page.locator(".sign-out strong")).to_have_text("writer")
    # The same delivery again (GitHub redelivers by id): seen before, nothing done twice.
    again = await oauth_webhook("github_app_authorization", revoked, delivery_id=delivery)
    assert again.body["status"] == "duplicate", again.body

    # Signing in again asks GitHub for both permissions afresh: nothing was kept (the answers
    # would otherwise be kept a minute).
    await octocat.close()
    _, octocat_page = await sign_in_with_github(browser, fake_github, base, "octocat")
    await expect(octocat_page.locator('tr[data-environment="Backend/production"]')).to_be_visible()
    assert len(fake_github.calls_to("GET", octocat_reads)) == 4
    await writer.close()


async def test_a_callback_not_started_by_this_browser_or_declined_signs_no_one_in(
    oauth_client: TestClient[Any, Any], fake_github: FakeGitHub
) -> None:
    fake_github.add_user("writer")
    fake_github.oauth_flow.user = "writer"
    jar = CookieJar(unsafe=True)
    async with ClientSession(base_url=base_of(oauth_client), cookie_jar=jar) as session:
        async with session.get("/auth/github/callback?code=abc&state=xyz") as answer:
            assert answer.status == 400
            assert STALE in await answer.text()
        async with session.get("/auth/github", allow_redirects=False) as answer:
            authorize = answer.headers["Location"]
        assert "code_challenge_method=S256" in authorize
        # A state that is not the one this browser was given: refused, no exchange.
        fake_github.oauth_flow.decline = True
        async with session.get(authorize, allow_redirects=False) as answer:
            back = answer.headers["Location"]
        assert "error=access_denied" in back
        async with session.get(back.replace("state=", "state=x")) as answer:
            assert answer.status == 400
        async with session.get("/auth/github", allow_redirects=False) as answer:
            authorize = answer.headers["Location"]
        async with session.get(authorize) as answer:  # declined, back with its state
            assert answer.status == 401
            assert CANCELED in await answer.text()
        async with session.get("/", allow_redirects=False) as answer:
            assert answer.headers["Location"] == "/sign-in"
    assert fake_github.oauth_flow.tokens == {}


# --- the grants, as for PR commands ------------------------------------------------------

WRITE_ACTS = frozenset({Act.VIEW, Act.DEPLOY, Act.ROLL_BACK, Act.FREEZE, Act.CANCEL, Act.DECIDE})


@pytest.mark.parametrize(
    ("permission", "role_name", "grants"),
    [
        ("none", "none", frozenset()),
        ("read", "read", frozenset({Act.VIEW})),
        ("read", "triage", frozenset({Act.VIEW})),
        ("write", "write", WRITE_ACTS),
        ("write", "maintain", EVERY_ACT),
        ("write", "release-manager", WRITE_ACTS),  # a custom role on write: not force
        ("admin", "admin", EVERY_ACT),
        ("admin", "custom-admin", EVERY_ACT),
        ("pull", "pull", frozenset()),  # not a value GitHub gives: nothing
    ],
)
def test_a_github_permission_grants_what_a_pr_command_would_allow(
    permission: str, role_name: str, grants: frozenset[Act]
) -> None:
    assert dashboard_grants(Access(permission, role_name)) == grants
