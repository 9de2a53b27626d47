"""`tarmac github register`: GitHub's App manifest flow, from the command line.

1. A one-time page on 127.0.0.1 holds a form that posts the manifest (app.yml, with this
   Tarmac's addresses) to GitHub's "new GitHub App" page, with a random `state`.
2. The person registering clicks through GitHub, which creates the App and sends the browser
   back to the page's `/callback` with a temporary `code` and the `state`.
3. Tarmac checks the state, exchanges the code (`POST /app-manifests/{code}/conversions`, no
   authentication, within the hour GitHub allows) for the App's id, private key, webhook secret
   and OAuth client, and writes them to the credentials file `tarmac serve` reads.

Nothing secret is printed or logged: not the code, the key or the secrets; only the file's path.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode, urlsplit

import aiohttp
import gidgethub
import gidgethub.aiohttp
import yaml
from aiohttp import web
from pydantic import ValidationError

from bot.github.app_file import AppFile, write_app_file

# Where api/webhooks.py serves deliveries (bot/ does not import api/; a test holds them equal).
WEBHOOK_PATH = "/api/github/webhooks"
# app.yml's stand-in for the address Tarmac answers on; --public-url replaces it.
PLACEHOLDER_URL = "https://tarmac.example.com"
DOTCOM_URL = "https://github.com"
DOTCOM_API_URL = "https://api.github.com"
CALLBACK_PATH = "/callback"
USER_AGENT = "tarmac"
# GitHub refuses longer App names.
MAX_NAME_LENGTH = 34
EXCHANGE_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)

EXIT_REGISTERED = 0
EXIT_NOT_WRITTEN = 1
EXIT_BAD_INPUT = 2
EXIT_GITHUB_REFUSED = 4
EXIT_WRONG_STATE = 5
EXIT_INTERRUPTED = 130


class RegistrationError(Exception):
    """A bad option or app.yml: nothing was started."""


class ExchangeFailed(Exception):
    """GitHub did not hand out the App's credentials for the code."""


@dataclass(frozen=True)
class Registration:
    """What one `tarmac github register` does, checked before anything starts."""

    public_url: str
    github_url: str
    api_url: str
    org: str | None
    output: Path
    manifest: dict[str, Any]  # app.yml as read; the addresses are filled in per run
    name: str
    port: int = 0

    def new_app_url(self, state: str) -> str:
        """GitHub's "register a new GitHub App" page for the account or the organisation."""
        account = f"/organizations/{self.org}" if self.org else ""
        return f"{self.github_url}{account}/settings/apps/new?{urlencode({'state': state})}"

    def manifest_for(self, redirect_url: str) -> dict[str, Any]:
        """app.yml with this Tarmac's addresses: its homepage, its webhook URL, and the page
        GitHub sends the browser back to; any other URL on app.yml's placeholder host is moved
        to the public URL too."""
        manifest = {key: _rebased(value, self.public_url) for key, value in self.manifest.items()}
        manifest["name"] = self.name
        manifest["url"] = self.public_url
        hook = dict(manifest.get("hook_attributes") or {})
        hook["url"] = self.public_url + WEBHOOK_PATH
        manifest["hook_attributes"] = hook
        manifest["redirect_url"] = redirect_url
        return manifest


def _rebased(value: Any, public_url: str) -> Any:
    on_placeholder = isinstance(value, str) and (
        value == PLACEHOLDER_URL or value.startswith(PLACEHOLDER_URL + "/")
    )
    if on_placeholder:
        return public_url + str(value).removeprefix(PLACEHOLDER_URL)
    if isinstance(value, list):
        return [_rebased(item, public_url) for item in value]
    return value


def api_url_for(github_url: str) -> str:
    """GitHub's REST API beside its web address: api.github.com for github.com, `/api/v3` on
    GitHub Enterprise Server (TARMAC_GITHUB_API_URL's two forms)."""
    if github_url == DOTCOM_URL:
        return DOTCOM_API_URL
    return github_url + "/api/v3"


def web_url(text: str, what: str) -> str:
    """`text` as an http(s) address without query or fragment, no trailing slash."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RegistrationError(
            f"{what}: must be an http:// or https:// address, e.g. https://tarmac.example.com"
        )
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise RegistrationError(f"{what}: must be a plain address (no user, query or fragment)")
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


def load_manifest(path: Path) -> dict[str, Any]:
    """app.yml, checked for what the flow fills in and what GitHub needs from it."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RegistrationError(
            f"cannot read the App manifest {path}: {exc.strerror} (run from Tarmac's checkout, "
            "or pass --manifest)"
        ) from None
    except yaml.YAMLError as exc:
        raise RegistrationError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise RegistrationError(f"{path}: must be a mapping (a GitHub App manifest)")
    problems = []
    if not isinstance(document.get("name"), str) or not document["name"].strip():
        problems.append("name: must be the App's name")
    if not isinstance(document.get("default_permissions"), dict):
        problems.append("default_permissions: must map each permission to read or write")
    events = document.get("default_events")
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        problems.append("default_events: must be a list of event names")
    hook = document.get("hook_attributes", {})
    if not isinstance(hook, dict):
        problems.append("hook_attributes: must be a mapping")
    if problems:
        raise RegistrationError(f"{path}: " + "; ".join(problems))
    return document


def app_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH:
        raise RegistrationError(f"--name: 1 to {MAX_NAME_LENGTH} characters (GitHub's limit)")
    return name


# --- the exchange ------------------------------------------------------------------------


async def exchange_code(session: aiohttp.ClientSession, api_url: str, code: str) -> AppFile:
    """The App's credentials for a manifest flow `code`; raises ExchangeFailed."""
    github = gidgethub.aiohttp.GitHubAPI(session, USER_AGENT, base_url=api_url)
    try:
        answer = await github.post(
            "/app-manifests/{code}/conversions",
            {"code": code},
            data=b"",
            extra_headers={"X-GitHub-Api-Version": "2022-11-28"},
        )
    except gidgethub.BadRequest as exc:
        status = int(exc.status_code)
        reason = f"{status} {exc.status_code.phrase}"
        if status in (404, 422):
            raise ExchangeFailed(
                f"GitHub refused the code ({reason}): it was used already or is more than an "
                "hour old; run `tarmac github register` again"
            ) from None
        raise ExchangeFailed(f"GitHub refused the code ({reason}: {exc})") from None
    except gidgethub.HTTPException as exc:
        raise ExchangeFailed(f"GitHub answered {int(exc.status_code)}; try again") from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ExchangeFailed(f"cannot reach GitHub at {api_url}: {reason}") from None
    return _credentials(answer, api_url)


def _credentials(answer: Any, api_url: str) -> AppFile:
    if not isinstance(answer, dict):
        raise ExchangeFailed("GitHub's answer is not the App's configuration")
    owner = answer.get("owner")
    try:
        return AppFile(
            app_id=answer.get("id"),
            private_key=answer.get("pem"),
            webhook_secret=answer.get("webhook_secret"),
            api_url=api_url,
            slug=answer.get("slug"),
            name=answer.get("name"),
            owner=owner.get("login") if isinstance(owner, dict) else None,
            html_url=answer.get("html_url"),
            client_id=answer.get("client_id"),
            client_secret=answer.get("client_secret"),
        )
    except ValidationError as exc:
        missing = sorted({str(error["loc"][0]) for error in exc.errors(include_input=False)})
        raise ExchangeFailed("GitHub's answer lacks " + ", ".join(missing)) from None


# --- the local page ----------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    lines: list[str]  # for the terminal: what happened, and what to do next
    error: bool


@dataclass
class _Flow:
    registration: Registration
    state: str
    port: int
    done: asyncio.Future[Outcome]
    busy: bool = False  # a code is being exchanged: a second answer is turned away

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def redirect_url(self) -> str:
        return self.base_url + CALLBACK_PATH


FLOW: web.AppKey[_Flow] = web.AppKey("flow", _Flow)


async def register(registration: Registration, out: TextIO = sys.stdout) -> int:
    """Run the flow until GitHub sends the browser back (or Ctrl-C); the exit code."""
    flow = _Flow(
        registration, secrets.token_urlsafe(32), 0, asyncio.get_running_loop().create_future()
    )
    app = web.Application(middlewares=[_local_host_only])
    app[FLOW] = flow
    app.router.add_get("/", _start_page)
    app.router.add_get(CALLBACK_PATH, _callback)
    # No access log: the callback's query holds the code. A browser that goes away while the
    # code is exchanged does not cancel the exchange (aiohttp's handler_cancellation is off).
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", registration.port)
        try:
            await site.start()
        except OSError as exc:
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            print(
                f"error: cannot listen on 127.0.0.1:{registration.port}: {reason}", file=sys.stderr
            )
            return EXIT_BAD_INPUT
        flow.port = int(runner.addresses[0][1])
        where = f"organisation {registration.org}" if registration.org else "your account"
        print(
            f"Open this page in a browser signed in to {registration.github_url} to register "
            f"the GitHub App for {where}:",
            file=out,
        )
        print(f"  {flow.base_url}/", file=out)
        print("Waiting for GitHub to send the browser back (Ctrl-C to give up)...", file=out)
        out.flush()
        outcome = await flow.done
    finally:
        await runner.cleanup()  # lets the outcome page finish first
    for line in outcome.lines:
        print(line, file=sys.stderr if outcome.error else out)
    return outcome.code


@web.middleware
async def _local_host_only(request: web.Request, handler: Any) -> web.StreamResponse:
    """Only pages asked for by this address: a web page whose host name was re-pointed at
    127.0.0.1 (DNS rebinding) cannot read the form or send a code."""
    port = request.app[FLOW].port
    if request.host not in (f"127.0.0.1:{port}", f"localhost:{port}"):
        return web.Response(status=421, text="Misdirected request\n")
    response: web.StreamResponse = await handler(request)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"  # the code never leaves in a Referer
    return response


async def _start_page(request: web.Request) -> web.Response:
    flow = request.app[FLOW]
    registration = flow.registration
    if flow.done.done() or flow.busy:
        return _page("Already done", "<p>This registration is over; see the terminal.</p>")
    manifest = registration.manifest_for(flow.redirect_url)
    permissions = ", ".join(
        f"{html.escape(str(k))}: {html.escape(str(v))}"
        for k, v in manifest.get("default_permissions", {}).items()
    )
    events = ", ".join(html.escape(str(e)) for e in manifest.get("default_events", []))
    account = "your account"
    if registration.org:
        account = f"organisation <b>{html.escape(registration.org)}</b>"
    body = f"""
<p>This page was opened by <code>tarmac github register</code>. The button sends Tarmac's App
manifest to GitHub, which shows what it is about to create and asks you to confirm; GitHub then
sends you back here and Tarmac stores the App's credentials.</p>
<ul>
<li>GitHub: {html.escape(registration.github_url)}, for {account}</li>
<li>App name: {html.escape(manifest["name"])}</li>
<li>Webhook URL: <code>{html.escape(manifest["hook_attributes"]["url"])}</code></li>
<li>Permissions: {permissions}</li>
<li>Events: {events}</li>
</ul>
<form method="post" action="{html.escape(registration.new_app_url(flow.state))}">
<input type="hidden" name="manifest" value="{html.escape(json.dumps(manifest))}">
<button type="submit">Register the GitHub App on GitHub</button>
</form>"""
    return _page("Register Tarmac's GitHub App", body)


async def _callback(request: web.Request) -> web.Response:
    flow = request.app[FLOW]
    if flow.done.done() or flow.busy:
        return _page("Already done", "<p>This registration is over; see the terminal.</p>", 409)
    state = request.query.get("state", "")
    code = request.query.get("code", "")
    if not secrets.compare_digest(state.encode(), flow.state.encode()):
        message = (
            "the answer that came back is not from the registration this command started "
            "(its state does not match); nothing was exchanged. If GitHub created an App, "
            "delete it in GitHub's settings, then run `tarmac github register` again"
        )
        flow.done.set_result(Outcome(EXIT_WRONG_STATE, [f"error: {message}"], error=True))
        return _page("Not registered", f"<p>{html.escape(_sentence(message))}</p>", 400)
    if not code:
        message = "GitHub sent the browser back without a code; nothing was registered"
        flow.done.set_result(Outcome(EXIT_GITHUB_REFUSED, [f"error: {message}"], error=True))
        return _page("Not registered", f"<p>{html.escape(_sentence(message))}</p>", 400)
    flow.busy = True
    outcome = await _exchange_and_store(flow.registration, code)
    flow.done.set_result(outcome)
    if outcome.error:
        text = outcome.lines[0].removeprefix("error: ")
        return _page("Not registered", f"<p>{html.escape(_sentence(text))}</p>", 502)
    return _page("Registered", "".join(f"<p>{html.escape(line)}</p>" for line in outcome.lines))


async def _exchange_and_store(registration: Registration, code: str) -> Outcome:
    async with aiohttp.ClientSession(timeout=EXCHANGE_TIMEOUT) as session:
        try:
            app = await exchange_code(session, registration.api_url, code)
        except ExchangeFailed as exc:
            return Outcome(EXIT_GITHUB_REFUSED, [f"error: {exc}"], error=True)
    path = registration.output.absolute()
    try:
        write_app_file(path, app)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return Outcome(
            EXIT_NOT_WRITTEN,
            [
                f"error: cannot write {path}: {reason}; GitHub created App {app.slug} "
                f"(id {app.app_id}): generate a private key in its settings and set the "
                "TARMAC_GITHUB_* settings instead"
            ],
            error=True,
        )
    return Outcome(
        EXIT_REGISTERED,
        [
            f"registered GitHub App {app.slug} (id {app.app_id}) owned by {app.owner}",
            f"credentials written to {path} (readable only by you; never commit it)",
            f"install it on your repositories: {app.html_url}/installations/new",
        ],
        error=False,
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _page(title: str, body: str, status: int = 200) -> web.Response:
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tarmac: {html.escape(title)}</title></head>
<body><h1>{html.escape(title)}</h1>
{body}
</body></html>
"""
    return web.Response(status=status, text=document, content_type="text/html")
