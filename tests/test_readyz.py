"""/readyz: ready when the database answers, its schema is current, writes are not failing
and, with a GitHub App, the outbox worker runs; otherwise 503 naming what is not. (Writes
that fail on a real disk fault: tests/test_sqlite_faults.py.)"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from api.app import create_app
from bot.settings import Settings
from bot.storage.db import Database, head_revision
from tests.conftest import Api, TestClock


async def test_without_a_github_app_ready_means_database_and_migrations(api: Api) -> None:
    reply = await api.get("/readyz", token="")

    assert (reply.status, reply.body) == (
        200,
        {
            "status": "ready",
            "checks": {"database": "ok", "migrations": "ok", "database_writes": "ok"},
        },
    )


async def test_a_schema_behind_the_newest_migration_is_not_ready(api: Api, db: Database) -> None:
    async with db.write() as session:
        await session.execute(text("UPDATE alembic_version SET version_num = '0001'"))

    reply = await api.get("/readyz")

    assert reply.status == 503
    assert reply.body["status"] == "not ready"
    assert reply.body["checks"]["migrations"] == f"at 0001, not {head_revision()}"


async def test_with_a_github_app_the_outbox_worker_must_run(
    aiohttp_client: Any, github_app_settings: Settings, clock: TestClock, github_api: Api
) -> None:
    # github_api's app runs no background work: its worker is not running.
    stopped = await github_api.get("/readyz")
    assert stopped.status == 503
    assert stopped.body["checks"]["outbox_worker"] == "not running"

    app = create_app(github_app_settings, clock=clock, background_work=True)
    running_client = await aiohttp_client(app)
    running = Api(running_client, github_api.conformance)
    reply = await running.get("/readyz")

    assert (reply.status, reply.body) == (
        200,
        {
            "status": "ready",
            "checks": {
                "database": "ok",
                "migrations": "ok",
                "database_writes": "ok",
                "outbox_worker": "ok",
            },
        },
    )
