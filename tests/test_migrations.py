"""Migrations: the schema they build is the schema the models describe, on both backends, and
the queries that run on every request find their index."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, event, insert, inspect, text

from bot.app.deployments import list_deployments
from bot.config.projects_file import parse_projects
from bot.config.projects_sync import sync_projects
from bot.core.pages import PageRequest
from bot.storage.db import MIGRATION_ADVISORY_LOCK, Database, alembic_config, head_revision
from bot.storage.deployments import running_release_candidate
from bot.storage.models import Base, Deployment, Release, ReleaseCandidate
from bot.storage.projects import find_environment
from tests.conftest import _dsn

# SQL is what these tests check: both databases in make test (tests/databases.py).
pytestmark = pytest.mark.both_databases

TABLES = {
    "projects",
    "environments",
    "releases",
    "release_candidates",
    "deployments",
    "api_tokens",
    "installations",
    "installation_repositories",
    "webhook_deliveries",
    "webhook_inbox",
    "outbox",
    "idempotency_keys",
    "change_reports",
    "pr_notes",
    "pr_note_environments",
    "dashboard_sessions",
    "dashboard_secrets",
    "approvals",
    "audit_events",
}


@pytest.fixture
async def empty_db(empty_database_url: str) -> AsyncIterator[Database]:
    database = Database.from_url(empty_database_url)
    yield database
    await database.dispose()


async def _drift(db: Database) -> list[Any]:
    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with db.engine.connect() as connection:
        return await connection.run_sync(compare)


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as connection:
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names) - {"alembic_version"}


async def _alembic(db: Database, action: Callable[..., None], revision: str) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config, revision)

    async with db.engine.connect() as connection:
        await connection.run_sync(run)
        await connection.commit()


async def test_an_empty_database_migrates_to_exactly_the_models(empty_db: Database) -> None:
    assert await empty_db.current_revision() is None
    assert await _tables(empty_db) == set()

    await empty_db.migrate()

    assert await empty_db.current_revision() == head_revision()
    assert head_revision() is not None
    assert await _tables(empty_db) == TABLES
    assert await _drift(empty_db) == []


async def test_migrating_twice_changes_nothing(empty_db: Database) -> None:
    await empty_db.migrate()
    revision = await empty_db.current_revision()

    await empty_db.migrate()

    assert await empty_db.current_revision() == revision == head_revision()
    assert await _drift(empty_db) == []


async def test_downgrade_to_base_and_upgrade_again(empty_db: Database) -> None:
    await empty_db.migrate()

    await _alembic(empty_db, command.downgrade, "base")
    assert await empty_db.current_revision() is None
    assert await _tables(empty_db) == set()

    await empty_db.migrate()
    assert await empty_db.current_revision() == head_revision()
    assert await _drift(empty_db) == []


async def test_the_drift_check_sees_a_missing_index(db: Database) -> None:
    assert await _drift(db) == []
    async with db.engine.connect() as connection:
        await connection.execute(text("DROP INDEX ix_deployments_environment_id_status_id"))
        await connection.commit()

    (difference,) = await _drift(db)

    assert difference[0] == "add_index"
    assert difference[1].name == "ix_deployments_environment_id_status_id"


async def test_two_replicas_migrating_at_once_both_succeed(
    backend: str, empty_database_url: str
) -> None:
    """Both wait on the migration lock, then one migrates and the other finds nothing to do."""
    if backend != "postgresql":
        pytest.skip("replicas share a database only on PostgreSQL")
    first, second = Database.from_url(empty_database_url), Database.from_url(empty_database_url)
    holder = await asyncpg.connect(_dsn(empty_database_url))
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_ADVISORY_LOCK)
        both = asyncio.gather(first.migrate(), second.migrate())
        deadline = asyncio.get_running_loop().time() + 30
        while await _waiting_for_advisory_locks(holder) < 2:
            assert asyncio.get_running_loop().time() < deadline, "migrate() took no lock"
            assert not both.done(), both
            await asyncio.sleep(0.02)
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_ADVISORY_LOCK)
        await asyncio.wait_for(both, timeout=60)
        assert await first.current_revision() == head_revision()
        assert await second.current_revision() == head_revision()
        assert await _drift(first) == []
    finally:
        await holder.close()
        await first.dispose()
        await second.dispose()


async def _waiting_for_advisory_locks(connection: asyncpg.Connection) -> int:
    count = await connection.fetchval(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
        " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
    )
    return int(count)


# --- indexes -------------------------------------------------------------------------------

INDEX_PROJECTS_YAML = """
projects:
  - name: Backend
    repo: acme/backend
    environments:
      - {name: dev}
      - {name: qa}
      - {name: staging}
      - {name: canary}
      - {name: dr}
      - {name: production, production: true}
"""
BUSY_ENVIRONMENTS = ["dev", "qa", "staging", "canary", "dr"]
DEPLOYMENTS = 6000
# Production is deployed far less often than the others: its history is spread thinly over the
# table, as in real life, so reading it by primary key order means reading everyone's history.
PRODUCTION_EVERY = 200
RELEASES = 100
CANDIDATES_PER_RELEASE = 10
STATUS_CYCLE = ["success", "failure", "error", "success", "canceled", "failure", "unknown"]


async def _seed_history(db: Database) -> None:
    """Thousands of deployments over six environments and a thousand RCs, then ANALYZE."""
    now = datetime.now(UTC)
    config = parse_projects(yaml.safe_load(INDEX_PROJECTS_YAML), Path("tarmac.yml"))
    async with db.write() as session:
        await sync_projects(session, config, now)
        production = await find_environment(session, "Backend", "production")
        busy = [(await find_environment(session, "Backend", name)).id for name in BUSY_ENVIRONMENTS]
        release_ids = list(
            await session.scalars(
                insert(Release).returning(Release.id),
                [
                    {"project_id": production.project_id, "version": f"v1.{r}.0", "created_at": now}
                    for r in range(RELEASES)
                ],
            )
        )
        candidate_ids = list(
            await session.scalars(
                insert(ReleaseCandidate).returning(ReleaseCandidate.id),
                [
                    {
                        "project_id": production.project_id,
                        "release_id": release_id,
                        "version": f"v1.{r}.0-rc{n}",
                        "number": n,
                        "commit_sha": f"{r * 100 + n:040x}",
                        "repo": "acme/backend",
                        "build_status": "ready",
                        "created_at": now,
                    }
                    for r, release_id in enumerate(release_ids)
                    for n in range(1, CANDIDATES_PER_RELEASE + 1)
                ],
            )
        )
        rows = []
        for i in range(DEPLOYMENTS):
            at = now - timedelta(minutes=DEPLOYMENTS - i)
            environment_id = production.id if i % PRODUCTION_EVERY == 0 else busy[i % len(busy)]
            rows.append(
                {
                    "environment_id": environment_id,
                    "release_candidate_id": candidate_ids[i % len(candidate_ids)],
                    "from_release_candidate_id": candidate_ids[(i - 1) % len(candidate_ids)],
                    "kind": "deploy",
                    "status": STATUS_CYCLE[i // PRODUCTION_EVERY % len(STATUS_CYCLE)],
                    "actor": "seed@example.com",
                    "deploy_start_at": at,
                    "deploy_end_at": at,
                    "updated_at": at,
                }
            )
        await session.execute(insert(Deployment), rows)
    async with db.engine.connect() as connection:
        await connection.execute(text("ANALYZE"))
        await connection.commit()


async def _statements_of(
    db: Database, work: Callable[[Any], Awaitable[object]]
) -> list[tuple[str, Any]]:
    """The SQL (with its parameters) that a real domain function sends to the database."""
    sent: list[tuple[str, Any]] = []

    def record(
        _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        sent.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with db.read() as session:
            await work(session)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    return [(sql, params) for sql, params in sent if "FROM deployments" in sql]


async def _plan(db: Database, sql: str, parameters: Any) -> str:
    explain = "EXPLAIN QUERY PLAN " if db.is_sqlite else "EXPLAIN "
    async with db.engine.connect() as connection:
        result = await connection.exec_driver_sql(explain + sql, parameters)
        rows = result.all()
    if db.is_sqlite:
        return "\n".join(str(row[-1]) for row in rows)
    return "\n".join(str(row[0]) for row in rows)


def _uses_index(plan: str, index: str, is_sqlite: bool) -> bool:
    """The plan reads deployments through `index` and reads no table that grows whole."""
    if is_sqlite:
        lines = [line.strip() for line in plan.splitlines()]
        full_scan = any(
            line.startswith(("SCAN deployments", "SCAN release_candidates")) for line in lines
        )
        searched = any(
            line.startswith("SEARCH deployments USING ")
            and (f"USING INDEX {index} " in line or f"USING COVERING INDEX {index} " in line)
            for line in lines
        )
        return searched and not full_scan
    full_scan = "Seq Scan on deployments" in plan or "Seq Scan on release_candidates" in plan
    return f" using {index} on deployments" in plan and not full_scan


async def _query_plans(db: Database) -> dict[str, tuple[str, Any]]:
    async def page_of_history(session: Any) -> None:
        await list_deployments(session, "Backend", "production", PageRequest(page=1, per_page=10))

    async def running_version(session: Any) -> None:
        environment = await find_environment(session, "Backend", "production")
        assert await running_release_candidate(session, environment) is not None

    (history,) = await _statements_of(db, page_of_history)
    (running,) = await _statements_of(db, running_version)
    return {
        "ix_deployments_environment_id_id": history,
        "ix_deployments_environment_id_status_id": running,
    }


async def test_history_and_running_version_queries_use_their_indexes(db: Database) -> None:
    await _seed_history(db)
    queries = await _query_plans(db)
    history_sql, history_params = queries["ix_deployments_environment_id_id"]
    assert "ORDER BY deployments.id DESC" in history_sql
    assert "status" in queries["ix_deployments_environment_id_status_id"][0]

    for index, (sql, parameters) in queries.items():
        plan = await _plan(db, sql, parameters)
        assert _uses_index(plan, index, db.is_sqlite), f"{index} not used:\n{sql}\n{plan}"

    # The check has teeth: without the index, the same query no longer passes it.
    async with db.engine.connect() as connection:
        await connection.execute(text("DROP INDEX ix_deployments_environment_id_id"))
        await connection.commit()
    await db.engine.dispose()  # SQLite connections keep plans prepared before the DROP
    plan = await _plan(db, history_sql, history_params)
    assert not _uses_index(plan, "ix_deployments_environment_id_id", db.is_sqlite), plan
