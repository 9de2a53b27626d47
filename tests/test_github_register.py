"""`tarmac github register` end to end, as a person does it: the command runs as a process, a
real Chromium (Debian's, driven by Playwright) opens the page it prints and clicks through the
fake GitHub's "new GitHub App" pages, and the credentials file it writes is all `tarmac serve`
needs to take GitHub's signed deliveries and to sign its own calls."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import socket
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from playwright.async_api import Browser, Page, Route, async_playwright

from api.webhooks import WEBHOOK_PATH
from bot import cli
from bot.github import registration
from tests.conftest import github_payload, sign_webhook
from tests.fake_github import FakeGitHub
from tests.leak_check import register_private_key, register_secret, remember_credentials
from tests.processes import eventually, start_server, stop_server
from tests.test_cli import EXAMPLE_CONFIG, REPO_ROOT, TARMAC, free_port, sqlite_url, tarmac_env

CHROMIUM = Path("/usr/bin/chromium")
APP_YML = REPO_ROOT / "app.yml"
PUBLIC_URL = "https://tarmac.example.com"
DEADLINE = 20.0


@dataclass
class GitHubWeb:
    """The fake GitHub's web half on its own address (its REST API under /api/v3, as on
    GitHub Enterprise Server), and what it answered there."""

    fake: FakeGitHub
    url: str
    answers: list[tuple[str, str, int, str]]  # method, path, status, auth kind

    @property
    def api_url(self) -> str:
        return self.url + "/api/v3"


@pytest.fixture
async def github_web(aiohttp_server: Any, fake_github: FakeGitHub) -> GitHubWeb:
    answers: list[tuple[str, str, int, str]] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "").partition(" ")[0].lower() or "none"
        response: web.StreamResponse = await handler(request)
        answers.append((request.method, request.path, response.status, auth))
        return response

    app = fake_github.web_app()
    app.middlewares.extend([record, remember_credentials])
    server = await aiohttp_server(app)
    url = str(server.make_url("")).rstrip("/")
    fake_github.manifest_flow.web_url = url
    return GitHubWeb(fake_github, url, answers)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not chromium_installed():
        pytest.fail(
            f"{CHROMIUM} is missing (the registration tests drive it): apt-get install chromium"
        )
    async with async_playwright() as playwright:
        # Debian's Chromium, never a browser Playwright would download.
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        await launched.close()


@dataclass
class Run:
    """One `tarmac github register` process and what it printed."""

    process: asyncio.subprocess.Process
    page_url: str
    stdout: str = ""
    stderr: str = ""

    async def finish(self, log: Path) -> int:
        out, err = await asyncio.wait_for(self.process.communicate(), DEADLINE)
        self.stdout += out.decode()
        self.stderr = err.decode()
        # Searched by the leak check with every other log of the run.
        await asyncio.to_thread(log.write_text, self.stdout + self.stderr)
        assert self.process.returncode is not None
        return self.process.returncode


async def start_register(cwd: Path, *args: str) -> Run:
    process = await asyncio.create_subprocess_exec(
        *TARMAC,
        "github",
        "register",
        "--manifest",
        str(APP_YML),
        *args,
        env=tarmac_env(),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    printed = ""
    while True:
        line = (await asyncio.wait_for(process.stdout.readline(), DEADLINE)).decode()
        assert line, f"exited before printing its page: {printed}"
        printed += line
        found = re.fullmatch(r"  (http://127\.0\.0\.1:\d+/)\n", line)
        if found:
            return Run(process, found.group(1), stdout=printed)


@contextlib.asynccontextmanager
async def registering(cwd: Path, *args: str) -> AsyncIterator[Run]:
    run = await start_register(cwd, *args)
    try:
        yield run
    finally:
        if run.process.returncode is None:
            run.process.kill()
            await run.process.wait()


async def click_through_github(page: Page, run: Run, account: str) -> None:
    await page.goto(run.page_url)
    await page.get_by_role("button", name="Register the GitHub App on GitHub").click()
    await page.get_by_role("button", name=f"Create GitHub App for {account}").click()


async def on_redirect_back(page: Page, change: Callable[[str], Awaitable[str]]) -> None:
    """Pass the address GitHub sends the browser back to through `change` on its way (the
    redirect that "Create GitHub App" answers with; Playwright routes no redirect itself)."""

    async def intercept(route: Route) -> None:
        answer = await route.fetch(max_redirects=0)
        assert answer.status == 302, answer.status
        location = await change(answer.headers["location"])
        await route.fulfill(status=302, headers={"Location": location})

    await page.route(re.compile(r"/settings/apps$"), intercept)


def chromium_installed() -> bool:
    return CHROMIUM.exists()


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def app_yml() -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(APP_YML.read_text())
    return manifest


def register_created_secrets(fake: FakeGitHub) -> None:
    for app in fake.manifest_flow.created:
        register_private_key(app["pem"])
        register_secret(app["webhook_secret"])
        register_secret(app["client_secret"])


async def test_register_then_serve_with_only_the_file(
    tmp_path: Path, github_web: GitHubWeb, browser: Browser
) -> None:
    fake = github_web.fake
    async with registering(
        tmp_path, "--public-url", PUBLIC_URL, "--github-url", github_web.url
    ) as run:
        page = await browser.new_page()
        await page.goto(run.page_url)
        assert f"{PUBLIC_URL}/api/github/webhooks" in await page.content()
        await click_through_github(page, run, "octocat")
        await page.get_by_role("heading", name="Registered").wait_for()
        code = await run.finish(tmp_path / "register.log")
    register_created_secrets(fake)

    assert code == 0, run.stderr
    [received] = fake.manifest_flow.received
    [created] = fake.manifest_flow.created
    expected = app_yml()
    assert (received.account, received.organization) == ("octocat", False)
    assert received.state is not None
    assert len(received.state) >= 32
    port = run.page_url.removeprefix("http://127.0.0.1:").rstrip("/")
    assert received.manifest == {
        **expected,
        "url": PUBLIC_URL,
        "hook_attributes": {"url": f"{PUBLIC_URL}/api/github/webhooks", "active": True},
        "redirect_url": f"http://127.0.0.1:{port}/callback",
        # The dashboard's sign-in with GitHub comes back to this Tarmac.
        "callback_urls": [f"{PUBLIC_URL}/auth/github/callback"],
    }
    assert received.manifest["default_permissions"] == expected["default_permissions"]
    assert received.manifest["default_events"] == expected["default_events"]
    # The code was exchanged once, without credentials (the endpoint takes none).
    [conversion] = fake.calls_to("POST", r"^/app-manifests/[^/]+/conversions$")
    assert conversion.auth == "none"
    assert conversion.path == f"/app-manifests/{fake.manifest_flow.exchanged[0]}/conversions"
    assert fake.manifest_flow.codes == {}

    path = tmp_path / "tarmac-github-app.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    saved = json.loads(path.read_text())
    assert saved["app_id"] == created["id"]
    assert saved["private_key"] == created["pem"]
    assert saved["webhook_secret"] == created["webhook_secret"]
    assert saved["client_secret"] == created["client_secret"]
    assert saved["api_url"] == github_web.api_url
    assert (saved["slug"], saved["owner"]) == ("tarmac", "octocat")
    assert f"credentials written to {path}" in run.stdout
    assert f"install it on your repositories: {github_web.url}/apps/tarmac/installations/new" in (
        run.stdout
    )
    printed = run.stdout + run.stderr
    [exchanged] = fake.manifest_flow.exchanged
    for secret in (created["webhook_secret"], created["client_secret"], exchanged):
        assert secret not in printed
    assert "PRIVATE KEY" not in printed
    assert files_in(tmp_path) == ["register.log", "tarmac-github-app.json"]

    # `tarmac serve` with that file and no TARMAC_GITHUB_* setting: the App is configured.
    env = tarmac_env(database_url=sqlite_url(tmp_path / "tarmac.db"), config=EXAMPLE_CONFIG)
    serve_port = free_port()
    server = await start_server(env, tmp_path, serve_port)
    try:
        payload = github_payload("ping", "with-app_id")
        payload["hook"]["app_id"] = created["id"]
        body = json.dumps(payload).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "ping",
            "X-GitHub-Delivery": "0b989ba4-242f-11e5-81e1-c7b6966d2516",
            "X-Hub-Signature-256": sign_webhook(body, created["webhook_secret"]),
        }
        async with aiohttp.ClientSession() as http:
            url = f"http://127.0.0.1:{serve_port}{WEBHOOK_PATH}"
            async with http.post(url, data=body, headers=headers) as reply:
                assert (reply.status, await reply.json()) == (202, {"status": "queued"})
        # It signs its calls with the new App's key, to the API the file names: GitHub takes
        # the JWT (the fake checks it against the key it generated for this App).
        await eventually(
            lambda: ("GET", "/api/v3/app/hook/deliveries", 200, "bearer") in github_web.answers,
            "the App's first JWT-signed call, answered 200",
        )
    finally:
        assert await stop_server(server) == 0


@pytest.mark.parametrize("how", ["used", "expired"])
async def test_a_used_or_expired_code_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, github_web: GitHubWeb, browser: Browser, how: str
) -> None:
    fake = github_web.fake
    page = await browser.new_page()
    if how == "expired":
        fake.manifest_flow.code_lifetime = -1.0  # GitHub: an hour
    else:

        async def used_first(location: str) -> str:
            # Someone else exchanges the code before Tarmac does.
            code = re.search(r"code=([0-9a-f]+)", location)
            assert code is not None
            async with aiohttp.ClientSession() as http:
                url = f"{fake.server_url}/app-manifests/{code.group(1)}/conversions"
                async with http.post(url) as reply:
                    assert reply.status == 201
            return location

        await on_redirect_back(page, used_first)

    async with registering(
        tmp_path, "--public-url", PUBLIC_URL, "--github-url", github_web.url
    ) as run:
        await click_through_github(page, run, "octocat")
        await page.get_by_role("heading", name="Not registered").wait_for()
        assert "used already or is more than an hour old" in await page.content()
        code = await run.finish(tmp_path / "register.log")
    register_created_secrets(fake)

    assert code == registration.EXIT_GITHUB_REFUSED == 4
    assert run.stderr == (
        "error: GitHub refused the code (404 Not Found): it was used already or is more than an "
        "hour old; run `tarmac github register` again\n"
    )
    assert not (tmp_path / "tarmac-github-app.json").exists()
    assert files_in(tmp_path) == ["register.log"]


async def test_an_answer_with_another_state_is_refused_and_nothing_is_exchanged(
    tmp_path: Path, github_web: GitHubWeb, browser: Browser
) -> None:
    fake = github_web.fake
    page = await browser.new_page()

    async def forged_state(location: str) -> str:
        return re.sub(r"state=[^&]+", "state=forged", location)

    await on_redirect_back(page, forged_state)

    async with registering(
        tmp_path, "--public-url", PUBLIC_URL, "--github-url", github_web.url
    ) as run:
        await click_through_github(page, run, "octocat")
        await page.get_by_role("heading", name="Not registered").wait_for()
        code = await run.finish(tmp_path / "register.log")
    register_created_secrets(fake)

    assert code == registration.EXIT_WRONG_STATE == 5
    assert run.stderr.startswith("error: the answer that came back is not from the registration")
    assert run.stderr.count("\n") == 1
    assert fake.calls_to("POST", r"/app-manifests/") == []
    assert len(fake.manifest_flow.codes) == 1  # the code GitHub sent is still unused
    assert not (tmp_path / "tarmac-github-app.json").exists()


async def test_an_organisation_gets_its_own_new_app_page(
    tmp_path: Path, github_web: GitHubWeb, browser: Browser
) -> None:
    fake = github_web.fake
    output = tmp_path / "acme-app.json"
    async with registering(
        tmp_path,
        "--public-url",
        PUBLIC_URL + "/",
        "--github-url",
        github_web.url,
        "--org",
        "acme",
        "--output",
        str(output),
    ) as run:
        page = await browser.new_page()
        await click_through_github(page, run, "acme")
        await page.get_by_role("heading", name="Registered").wait_for()
        code = await run.finish(tmp_path / "register.log")
    register_created_secrets(fake)

    assert code == 0, run.stderr
    [received] = fake.manifest_flow.received
    assert (received.account, received.organization) == ("acme", True)
    assert ("POST", "/organizations/acme/settings/apps/new", 200, "none") in github_web.answers
    assert received.manifest["hook_attributes"]["url"] == f"{PUBLIC_URL}/api/github/webhooks"
    saved = json.loads(output.read_text())
    assert saved["owner"] == "acme"
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    assert "owned by acme" in run.stdout


# --- without a browser: addresses, options, the local page's guards ------------------------


def test_the_manifest_points_github_at_the_webhook_path_tarmac_serves() -> None:
    assert registration.WEBHOOK_PATH == WEBHOOK_PATH


def test_the_api_is_beside_github_as_github_places_it() -> None:
    assert registration.api_url_for("https://github.com") == "https://api.github.com"
    assert registration.api_url_for("https://ghe.example.com") == "https://ghe.example.com/api/v3"


BAD_OPTIONS = [
    ("--public-url", "tarmac.example.com", "error: --public-url: must be an http:// or https://"),
    ("--public-url", "https://x.example/?a=1", "error: --public-url: must be a plain address"),
    ("--github-url", "ftp://github.com", "error: --github-url: must be an http:// or https://"),
    ("--org", "acme--corp", "error: --org: 'acme--corp' is not a GitHub organisation name"),
    ("--name", "T" * 35, "error: --name: 1 to 34 characters (GitHub's limit)"),
    ("--manifest", "nowhere.yml", "error: cannot read the App manifest nowhere.yml: No such file"),
    ("--output", "no/such/folder/app.json", "error: --output: no folder "),
    ("--output", "taken.json", "error: taken.json exists (an App registered before?)"),
]


@pytest.mark.parametrize(
    ("option", "value", "said"), BAD_OPTIONS, ids=[f"{o}={v[:20]}" for o, v, _ in BAD_OPTIONS]
)
def test_a_bad_option_stops_the_command_before_anything_listens(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    option: str,
    value: str,
    said: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken.json").write_text("{}")
    options = {"--public-url": PUBLIC_URL, "--manifest": str(APP_YML), option: value}

    code = cli.main(["github", "register", *(part for pair in options.items() for part in pair)])

    assert code == registration.EXIT_BAD_INPUT == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(said), captured.err
    assert captured.err.count("\n") == 1
    assert files_in(tmp_path) == ["taken.json"]


async def test_the_local_page_answers_only_to_its_own_address(tmp_path: Path) -> None:
    port = free_port()
    planned = registration.Registration(
        public_url=PUBLIC_URL,
        github_url="https://github.com",
        api_url="https://api.github.com",
        org=None,
        output=tmp_path / "tarmac-github-app.json",
        manifest=registration.load_manifest(APP_YML),
        name="Tarmac",
        port=port,
    )
    printed = io.StringIO()
    flow = asyncio.create_task(registration.register(planned, printed))
    page = f"http://127.0.0.1:{port}/"
    await eventually(lambda: page in printed.getvalue(), "the page's address")
    async with aiohttp.ClientSession() as http:
        # A page of another site whose name was re-pointed at 127.0.0.1 (DNS rebinding).
        async with http.get(page, headers={"Host": f"evil.example:{port}"}) as reply:
            assert reply.status == 421
        async with http.get(page) as reply:
            assert reply.status == 200
            assert reply.headers["Cache-Control"] == "no-store"
            form = await reply.text()
        action = re.search(r'action="https://github\.com/settings/apps/new\?state=([^"]+)"', form)
        assert action is not None
        async with http.get(page + "callback?code=abc&state=" + action.group(1)[:-1]) as reply:
            assert reply.status == 400

    assert await asyncio.wait_for(flow, DEADLINE) == registration.EXIT_WRONG_STATE
    assert files_in(tmp_path) == []


def test_a_taken_port_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        options = ["--public-url", PUBLIC_URL, "--manifest", str(APP_YML), "--port", str(port)]
        code = cli.main(["github", "register", *options])

    assert code == registration.EXIT_BAD_INPUT
    assert capsys.readouterr().err == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )
    assert files_in(tmp_path) == []
