"""Shared fixtures: real databases (SQLite file and the local PostgreSQL), the real app on a
real loopback server, and an API client that checks every response against the OpenAPI
document."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from api.app import create_app
from api.keys import SERVICE
from api.openapi import build_openapi_document
from api.webhooks import WEBHOOK_PATH
from bot.github.outbound.worker import OutboxWorker
from bot.settings import Settings
from bot.storage import tokens
from bot.storage.db import Database
from bot.storage.models import Base
from tests.fake_github import FakeGitHub
from tests.figures import print_figures, receive_figures, send_figures_to_main
from tests.github_material import DOTCOM, example_payload
from tests.leak_check import (
    record_response,
    register_private_key,
    register_secret,
    remember_credentials,
)
from tests.openapi_conformance import OpenApiConformance

# Every secret the suite makes is searched for in every log and answer (tests/leak_check.py).
pytest_plugins = [
    "tests.session_checks",
    "tests.leak_check",
    "tests.checkout_reads",
    "tests.databases",
]

POSTGRES_URL = os.environ.get(
    "TARMAC_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
POSTGRES_REQUIRED = os.environ.get("TARMAC_TEST_REQUIRE_POSTGRES") == "1"

PROJECTS_YAML = """
projects:
  - name: Backend
    repo: acme/backend
    build:
      workflow: build.yml
    environments:
      - name: staging
        deploy_workflow: deploy.yml
        auto_deploy: true
        url: https://staging.example.com
      - name: production
        deploy_workflow: deploy.yml
        production: true
        timeout_minutes: 30
  - name: Frontend
    repo: acme/monorepo
    tag_prefix: frontend/
    environments:
      - name: production
        production: true
"""

# PROJECTS_YAML without Backend's staging environment: staging is "removed".
PROJECTS_WITHOUT_STAGING_YAML = PROJECTS_YAML.replace(
    """      - name: staging
        deploy_workflow: deploy.yml
        auto_deploy: true
        url: https://staging.example.com
""",
    "",
)

PER_PAGE_MESSAGE = "Invalid query parameter 'per_page': must be from 1 to 100"
PAGE_MESSAGE = "Invalid query parameter 'page': must be a whole number, 1 or more"
BAD_PAGINATION = [
    ({"per_page": "0"}, PER_PAGE_MESSAGE),
    ({"per_page": "101"}, PER_PAGE_MESSAGE),
    ({"per_page": "abc"}, PER_PAGE_MESSAGE),
    ({"per_page": "-1"}, PER_PAGE_MESSAGE),
    ({"page": "0"}, PAGE_MESSAGE),
    ({"page": "-2"}, PAGE_MESSAGE),
    ({"page": "x"}, PAGE_MESSAGE),
    ({"page": "1.5"}, PAGE_MESSAGE),
    ({"page": ""}, PAGE_MESSAGE),
]

SHA_A = "a" * 40
SHA_B = "b" * 40
SHA_C = "c" * 40


# --- databases -------------------------------------------------------------------------


def _dsn(url: str, database: str | None = None) -> str:
    """asyncpg DSN from a SQLAlchemy URL, optionally for another database."""
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    if database is not None:
        dsn = dsn.rsplit("/", 1)[0] + "/" + database
    return dsn


def _with_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


async def _admin(statement: str) -> None:
    """One statement on the server's default database (CREATE / DROP DATABASE)."""
    admin = await asyncpg.connect(_dsn(POSTGRES_URL))
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def _create_database(name: str, template: str | None = None) -> str:
    """A new PostgreSQL database (a copy of `template`, if given); returns its URL."""
    copy = f' TEMPLATE "{template}"' if template is not None else ""
    await _admin(f'CREATE DATABASE "{name}"{copy}')
    return _with_database(POSTGRES_URL, name)


async def _drop_database(name: str) -> None:
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _postgres_reachable() -> str | None:
    try:
        connection = await asyncpg.connect(_dsn(POSTGRES_URL), timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"{type(exc).__name__}: {exc}"
    await connection.close()
    return None


def _worker() -> str:
    """This process's name under pytest-xdist ("gw0", "gw1", ...), or "main" without it."""
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str | None]:
    """A migrated PostgreSQL database to copy (CREATE DATABASE … TEMPLATE), one per worker."""
    problem = asyncio.run(_postgres_reachable())
    if problem is not None:
        if POSTGRES_REQUIRED:
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is required but unreachable: {problem}")
        yield None
        return
    name = f"tarmac_tpl_{_worker()}_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        db = Database.from_url(await _create_database(name))
        await db.migrate()
        await db.dispose()

    asyncio.run(create())
    yield name
    asyncio.run(_drop_database(name))


# What the schema of a migrated database holds; a test that changed it (dropped an index) leaves
# a database that is made anew instead of emptied.
_SCHEMA_SHAPE = """
SELECT (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'),
       (SELECT count(*) FROM pg_tables WHERE schemaname = 'public'),
       (SELECT string_agg(version_num, ',') FROM alembic_version)
"""
_OTHER_SESSIONS = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
_SEQUENCES = "SELECT quote_ident(sequencename) FROM pg_sequences WHERE schemaname = 'public'"


class ReusedPostgresDatabase:
    """One PostgreSQL database per test process, emptied before each test that uses it.

    Making a database per test (CREATE … TEMPLATE, then a forced DROP) costs about half a
    second. Emptying this one is a DELETE of every table, children first, and a restart of every
    sequence, in one transaction: 17 ms here, where a TRUNCATE of the same tables takes 120 ms
    (it makes new files for each). Sessions a previous test left open (a killed `tarmac
    serve`, an engine not disposed) are ended first, so none holds a lock.
    """

    def __init__(self, template: str) -> None:
        self.template = template
        self.name = f"tarmac_test_{_worker()}_{uuid.uuid4().hex[:8]}"
        self.url = _with_database(POSTGRES_URL, self.name)
        self._shape: tuple[Any, ...] | None = None
        self._empty: str | None = None

    async def create(self) -> None:
        await _create_database(self.name, template=self.template)
        connection = await asyncpg.connect(_dsn(self.url))
        try:
            self._shape = tuple(await connection.fetchrow(_SCHEMA_SHAPE))
            sequences = [row[0] for row in await connection.fetch(_SEQUENCES)]
        finally:
            await connection.close()
        statements = ["BEGIN", "SET LOCAL lock_timeout = '20s'"]
        statements += [
            f'DELETE FROM "{table.name}"' for table in reversed(Base.metadata.sorted_tables)
        ]
        statements += [f"ALTER SEQUENCE {sequence} RESTART" for sequence in sequences]
        self._empty = "; ".join([*statements, "COMMIT"])

    async def fresh(self) -> str:
        """The database's URL, holding a migrated schema and no rows."""
        assert self._empty is not None
        connection = await asyncpg.connect(_dsn(self.url))
        try:
            await connection.execute(_OTHER_SESSIONS)
            if tuple(await connection.fetchrow(_SCHEMA_SHAPE)) == self._shape:
                await connection.execute(self._empty)  # one round trip
                return self.url
        finally:
            await connection.close()
        await self.drop()
        await self.create()
        return self.url

    async def drop(self) -> None:
        await _drop_database(self.name)


@pytest.fixture(scope="session")
def postgres_database(postgres_template: str | None) -> Iterator[ReusedPostgresDatabase | None]:
    if postgres_template is None:
        yield None
        return
    database = ReusedPostgresDatabase(postgres_template)
    asyncio.run(database.create())
    yield database
    asyncio.run(database.drop())


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"

    async def create() -> None:
        db = Database.from_url(f"sqlite+aiosqlite:///{path}")
        await db.migrate()
        await db.dispose()

    asyncio.run(create())
    return path


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database a test runs on; tests/databases.py decides which for each test."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
async def database_url(
    backend: str,
    tmp_path: Path,
    sqlite_template: Path,
    postgres_database: ReusedPostgresDatabase | None,
) -> AsyncIterator[str]:
    """A migrated, empty database for this test, on its backend."""
    if backend == "sqlite":
        path = tmp_path / "tarmac.db"
        shutil.copy(sqlite_template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    if postgres_database is None:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")
    yield await postgres_database.fresh()


@pytest.fixture
async def empty_database_url(
    backend: str, tmp_path: Path, postgres_template: str | None
) -> AsyncIterator[str]:
    """A database with no tables at all, for migration tests."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    if postgres_template is None:
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}")
    name = f"tarmac_empty_{uuid.uuid4().hex[:12]}"
    yield await _create_database(name)
    await _drop_database(name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(database_url)
    yield database
    await database.dispose()


# --- the app -----------------------------------------------------------------------------


class TestClock:
    """The service's clock, moved by the test (freeze ends, deployment timeouts)."""

    __test__ = False

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> TestClock:
    return TestClock()


@pytest.fixture
def projects_file(tmp_path: Path) -> Path:
    path = tmp_path / "tarmac.yml"
    path.write_text(PROJECTS_YAML)
    return path


@pytest.fixture
def settings(database_url: str, projects_file: Path) -> Settings:
    return Settings(database_url=database_url, config=projects_file)


@dataclass
class Reply:
    status: int
    body: Any
    headers: Any


@pytest.fixture(scope="session")
def openapi_document() -> dict[str, Any]:
    return build_openapi_document()


@pytest.fixture(scope="session")
def conformance(openapi_document: dict[str, Any]) -> OpenApiConformance:
    return OpenApiConformance(openapi_document)


class Api:
    """The REST API as a client sees it. Every reply is checked against the OpenAPI document."""

    def __init__(self, client: TestClient[Any, Any], conformance: OpenApiConformance) -> None:
        self.client = client
        self.conformance = conformance
        self.token: str | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | str | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        check: bool = True,
    ) -> Reply:
        sent_headers = dict(headers or {})
        bearer = token if token is not None else self.token
        if bearer:
            sent_headers.setdefault("Authorization", f"Bearer {bearer}")
        if json_body is not None:
            data = json.dumps(json_body)
            sent_headers.setdefault("Content-Type", "application/json")
        async with self.client.request(
            method, path, data=data, headers=sent_headers, params=params
        ) as response:
            raw = await response.read()
            record_response(raw)
            body: Any = None
            if raw:
                is_json = response.content_type == "application/json"
                body = json.loads(raw) if is_json else raw.decode("utf-8")
            reply = Reply(response.status, body, response.headers)
        if check:
            self.conformance.check(method, path.split("?")[0], reply.status, body, reply.headers)
        return reply

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, json_body: Any = None, **kwargs: Any) -> Reply:
        return await self.request("POST", path, json_body=json_body, **kwargs)

    async def patch(self, path: str, json_body: Any = None, **kwargs: Any) -> Reply:
        return await self.request("PATCH", path, json_body=json_body, **kwargs)

    async def put(self, path: str, json_body: Any = None, **kwargs: Any) -> Reply:
        return await self.request("PUT", path, json_body=json_body, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("DELETE", path, **kwargs)

    # Story helpers: the calls most tests make on their way to what they check.

    async def create_rc(
        self, version: str, commit: str = SHA_A, project: str = "Backend", **extra: Any
    ) -> Reply:
        repo = extra.pop("repo", "acme/backend" if project == "Backend" else "acme/monorepo")
        return await self.post(
            f"/api/releases/{project}/releases/{version}",
            {"repo": repo, "commit": commit, **extra},
        )

    async def deploy(self, environment: str, version: str, project: str = "Backend") -> Reply:
        return await self.post(
            f"/api/releases/{project}/environments/{environment}/deployments",
            {"release_candidate_version": version},
        )

    async def report(
        self, environment: str, version: str, status: str, project: str = "Backend"
    ) -> Reply:
        return await self.patch(
            f"/api/releases/{project}/environments/{environment}/deployments",
            {"release_candidate_version": version, "status": status},
        )

    async def rollback(
        self, environment: str, project: str = "Backend", force: bool | None = None
    ) -> Reply:
        body = None if force is None else {"force": force}
        return await self.post(f"/api/releases/{project}/environments/{environment}/rollback", body)

    async def deployments(self, environment: str, project: str = "Backend", **params: str) -> Reply:
        return await self.get(
            f"/api/releases/{project}/environments/{environment}/deployments", params=params
        )

    async def ship(self, environment: str, version: str, commit: str = SHA_A) -> Reply:
        """Create the RC if needed, deploy it and report success: it is now running."""
        created = await self.create_rc(version, commit)
        assert created.status == 201, created.body
        deployed = await self.deploy(environment, version)
        assert deployed.status == 201, deployed.body
        done = await self.report(environment, version, "success")
        assert done.status == 200, done.body
        return done


async def make_token(
    db: Database, name: str = "ci", projects: list[str] | None = None, actor: str | None = None
) -> str:
    async with db.write() as session:
        secret = await tokens.create_token(
            session,
            name=name,
            projects=projects or [],
            actor_email=actor,
            now=datetime.now(UTC),
        )
    return register_secret(secret)


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, clock: TestClock) -> TestClient[Any, Any]:
    app = create_app(settings, clock=clock, background_work=False)
    test_client: TestClient[Any, Any] = await aiohttp_client(app)
    return test_client


@pytest.fixture
async def api(client: TestClient[Any, Any], conformance: OpenApiConformance, db: Database) -> Api:
    """The API with a token for every project, whose actor is ci@example.com."""
    wrapped = Api(client, conformance)
    wrapped.token = await make_token(db, "ci", actor="ci@example.com")
    return wrapped


# --- the GitHub App: settings, signed webhooks -------------------------------------------

TEST_APP_ID = 424242
ANSWER_WAIT_SECONDS = 8.0
WEBHOOK_SECRET = register_secret("tarmac-test-webhook-secret-5b1f0c")
BACKEND_INSTALLATION = 11
MONOREPO_INSTALLATION = 12


def github_payload(event: str, name: str = "payload", flavour: str = DOTCOM) -> dict[str, Any]:
    """One of GitHub's example payloads (@octokit/webhooks-examples), e.g. ("installation",
    "created"), as a fresh dict."""
    return example_payload(event, name, flavour)


def sign_webhook(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    """The `X-Hub-Signature-256` GitHub sends: HMAC-SHA256 of the raw body, hex."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@pytest.fixture(scope="session")
def github_private_key() -> str:
    """The test App's RSA key, PEM, made once per session (GitHub hands out PKCS#1 keys)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")
    register_private_key(pem)
    return pem


@pytest.fixture
async def fake_github(aiohttp_server: Any, github_private_key: str) -> AsyncIterator[FakeGitHub]:
    """The fake GitHub on a loopback server; the test App is installed on both test repos.

    A request GitHub's REST description does not allow fails the test at teardown.
    """
    key = serialization.load_pem_private_key(github_private_key.encode(), password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    github = FakeGitHub(TEST_APP_ID, public.decode("ascii"))
    github.install("acme/backend", BACKEND_INSTALLATION)
    github.install("acme/monorepo", MONOREPO_INSTALLATION)
    app = github.app()
    app.middlewares.append(remember_credentials)  # the JWTs and tokens it sees are secrets
    server = await aiohttp_server(app)
    github.server_url = str(server.make_url("")).rstrip("/")
    yield github
    for issued in github.tokens:
        register_secret(issued)
    assert github.violations == [], github.violations


@pytest.fixture
def github_app_settings(
    settings: Settings, github_private_key: str, fake_github: FakeGitHub
) -> Settings:
    """`settings` with the GitHub App configured, talking to the fake GitHub."""
    return settings.model_copy(
        update={
            "github_app_id": TEST_APP_ID,
            "github_private_key": SecretStr(github_private_key),
            "github_webhook_secret": SecretStr(WEBHOOK_SECRET),
            "github_api_url": fake_github.server_url,
            # Content calls unpaced (still one at a time): the clock tests move is not the
            # one pacing counts in. tests/test_pull_request_notes.py paces them.
            "github_content_interval_seconds": 0.0,
            # The tests read what a delivery did from its answer; by default the answer leaves
            # once the delivery is stored (tests/test_webhooks.py checks that, and
            # tests/test_inbox_faults.py runs it under kills).
            "webhook_answer_wait_seconds": ANSWER_WAIT_SECONDS,
        }
    )


@pytest.fixture
def outbox(github_client: TestClient[Any, Any]) -> OutboxWorker:
    """The app's outbox worker; tests deliver with `await outbox.drain()` (no background
    task runs in tests, so what reaches GitHub and when is the test's to say)."""
    worker = github_client.app[SERVICE].outbox_worker
    assert worker is not None
    return worker


@pytest.fixture
async def github_client(
    aiohttp_client: Any, github_app_settings: Settings, clock: TestClock, fake_github: FakeGitHub
) -> TestClient[Any, Any]:
    """The real app, GitHub App configured, on a real loopback server; the fake GitHub's runs
    are made on the app's clock."""
    fake_github.clock = clock
    app = create_app(github_app_settings, clock=clock, background_work=False)
    test_client: TestClient[Any, Any] = await aiohttp_client(app)
    return test_client


@pytest.fixture
async def github_api(
    github_client: TestClient[Any, Any], conformance: OpenApiConformance, db: Database
) -> Api:
    """Like `api`, on the app that has the GitHub App configured (the one `webhook` posts to)."""
    wrapped = Api(github_client, conformance)
    wrapped.token = await make_token(db, "ci", actor="ci@example.com")
    return wrapped


class Webhooks:
    """Deliveries as GitHub sends them: GitHub's headers, a real HMAC-SHA256 signature.

    Every reply is checked against the OpenAPI document, like the Api client's.
    """

    def __init__(
        self,
        client: TestClient[Any, Any],
        conformance: OpenApiConformance,
        secret: str = WEBHOOK_SECRET,
    ) -> None:
        self.client = client
        self.conformance = conformance
        self.secret = secret

    async def __call__(
        self,
        event: str,
        payload: Any,
        delivery_id: str | None = None,
        secret: str | None = None,
        **kwargs: Any,
    ) -> Reply:
        return await self.send(event, payload, delivery_id, secret, **kwargs)

    async def send(
        self,
        event: str,
        payload: Any,
        delivery_id: str | None = None,
        secret: str | None = None,
        *,
        signed: bool = True,
        headers: dict[str, str] | None = None,
        check: bool = True,
    ) -> Reply:
        """Sign `payload` (JSON) with `secret` (default: the App's) and deliver it."""
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        sent = self.github_headers(event, body, delivery_id, secret, signed=signed)
        sent.update(headers or {})
        return await self.post_raw(body, sent, check=check)

    def github_headers(
        self,
        event: str,
        body: bytes,
        delivery_id: str | None = None,
        secret: str | None = None,
        *,
        signed: bool = True,
    ) -> dict[str, str]:
        key = (secret if secret is not None else self.secret).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/a1b2c3d",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery_id or str(uuid.uuid4()),
            "X-GitHub-Hook-ID": "450000123",
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-GitHub-Hook-Installation-Target-ID": str(TEST_APP_ID),
        }
        if signed:
            headers["X-Hub-Signature"] = "sha1=" + hmac.new(key, body, hashlib.sha1).hexdigest()
            headers["X-Hub-Signature-256"] = sign_webhook(body, key.decode("utf-8"))
        return headers

    async def post_raw(self, body: bytes, headers: dict[str, str], *, check: bool = True) -> Reply:
        async with self.client.post(WEBHOOK_PATH, data=body, headers=headers) as response:
            raw = await response.read()
            record_response(raw)
            reply = Reply(response.status, json.loads(raw) if raw else None, response.headers)
        if check:
            self.conformance.check("POST", WEBHOOK_PATH, reply.status, reply.body, reply.headers)
        return reply


@pytest.fixture
def webhook(github_client: TestClient[Any, Any], conformance: OpenApiConformance) -> Webhooks:
    """`await webhook("installation", payload)`: a signed delivery to the App-configured app."""
    return Webhooks(github_client, conformance)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    print_figures(terminalreporter)


def pytest_sessionfinish(session: pytest.Session) -> None:
    send_figures_to_main(session.config)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    receive_figures(node)
