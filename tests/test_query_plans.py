"""The queries of a rollback, GraphQL's report summaries and the dashboard's find their rows
through an index, on both backends, so their cost does not grow with the history
(bench/history.py and bench/graphql.py measure it; this fails CI first).

SQLite is checked as Tarmac runs it: without statistics (Tarmac never runs ANALYZE there), when
its planner picks between indexes by the shape of the query alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select, text

from bot.app.operations import Mirror, roll_back
from bot.domain.changes import PathFilter
from bot.domain.statuses import ACTIVE_STATUSES, DeploymentStatus
from bot.storage.change_reports import find_report_summaries, paths_digest
from bot.storage.dashboard import (
    change_mark,
    deployments_seen,
    environments_changed_since,
    newest_candidate_facts,
)
from bot.storage.db import Database
from bot.storage.models import ChangeReport, Deployment
from bot.storage.projects import find_environment
from tests.test_migrations import _plan, _seed_history, _statements_of, _uses_index

# SQL is what these tests check: both databases in make test (tests/databases.py).
pytestmark = pytest.mark.both_databases

STATUS_INDEX = "ix_deployments_environment_id_status_id"
CANDIDATE_INDEX = "ix_deployments_environment_id_release_candidate_id_id"


async def _seed_without_sqlite_statistics(db: Database) -> None:
    await _seed_history(db)
    if db.is_sqlite:
        async with db.engine.connect() as connection:
            await connection.execute(text("DELETE FROM sqlite_stat1"))
            await connection.commit()
        await db.engine.dispose()  # statistics are read when a connection opens


async def _rollback_statements(db: Database) -> list[tuple[str, Any]]:
    """What a rollback of production sends about deployments (rolled back afterwards)."""

    async def production_rollback(session: Any) -> None:
        await roll_back(
            session,
            Mirror(enabled=False),
            project_name="Backend",
            environment_name="production",
            actor="ci@example.com",
            force=False,
            clock=lambda: datetime.now(UTC),
        )

    return await _statements_of(db, production_rollback)


def _one(statements: list[tuple[str, Any]], *fragments: str) -> tuple[str, Any]:
    (found,) = [(sql, p) for sql, p in statements if all(f in sql for f in fragments)]
    return found


async def test_a_rollback_reads_deployments_only_through_indexes(db: Database) -> None:
    await _seed_without_sqlite_statistics(db)
    statements = await _rollback_statements(db)
    queries = {
        "rollback target": (
            _one(statements, "rolled_back_at IS NULL", "ORDER BY deployments.id DESC"),
            STATUS_INDEX,
        ),
        "RC rolled away from": (
            _one(
                statements, "SELECT deployments.id, deployments.status, deployments.rolled_back_at"
            ),
            CANDIDATE_INDEX,
        ),
        "active deployments": (_one(statements, "deployments.status IN"), STATUS_INDEX),
    }
    for name, ((sql, parameters), index) in queries.items():
        plan = await _plan(db, sql, parameters)
        assert _uses_index(plan, index, db.is_sqlite), f"{name}: {index} not used:\n{sql}\n{plan}"


async def test_the_check_sees_the_query_shapes_that_walk_the_history(db: Database) -> None:
    """The shapes these queries had before: SQLite, with no statistics, takes the index that
    reads a whole environment (in id order, or every success of it) and the check says so."""
    if not db.is_sqlite:
        pytest.skip("PostgreSQL chooses by its statistics; the shapes are SQLite's trap")
    await _seed_without_sqlite_statistics(db)

    async def old_shapes(session: Any) -> None:
        environment = await find_environment(session, "Backend", "production")
        await session.scalars(
            select(Deployment)
            .where(
                Deployment.environment_id == environment.id,
                Deployment.status.in_(ACTIVE_STATUSES),
            )
            .order_by(Deployment.id.desc())
        )
        await session.execute(
            select(Deployment.id).where(
                Deployment.environment_id == environment.id,
                Deployment.release_candidate_id == 1,
                Deployment.status == DeploymentStatus.SUCCESS,
                Deployment.rolled_back_at.is_(None),
            )
        )

    ordered, by_status = await _statements_of(db, old_shapes)
    plan = await _plan(db, *ordered)
    assert not _uses_index(plan, STATUS_INDEX, db.is_sqlite), plan
    plan = await _plan(db, *by_status)
    assert not _uses_index(plan, CANDIDATE_INDEX, db.is_sqlite), plan


async def test_report_summaries_seek_the_unique_index(db: Database) -> None:
    """GraphQL's report loader (IN per key column, api/graphql/context.py) finds 50 reports
    among thousands through the unique index, not by reading the table."""
    await db.migrate()
    now = datetime.now(UTC)
    rows = [
        {
            "repo": f"acme/r{n % 40:02d}",
            "base_commit": f"{n:040x}",
            "head_commit": f"{n + 1:040x}",
            "paths_digest": paths_digest(PathFilter()),
            "paths": [],
            "requested_at": now,
        }
        for n in range(3_000)
    ]
    async with db.write() as session:
        await session.execute(insert(ChangeReport), rows)
    if not db.is_sqlite:
        async with db.engine.connect() as connection:
            await connection.execute(text("ANALYZE change_reports"))
            await connection.commit()
    keys = [(r["repo"], r["base_commit"], r["head_commit"], r["paths_digest"]) for r in rows[::60]]
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with db.read() as session:
            found = await find_report_summaries(session, keys)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)

    assert sorted(s.base_commit for s in found) == sorted(k[1] for k in keys)
    sql, parameters = next((s, p) for s, p in sent if "FROM change_reports" in s)
    plan = await _plan(db, sql, parameters)
    if db.is_sqlite:
        assert "SEARCH change_reports USING INDEX sqlite_autoindex_change_reports_1" in plan, plan
        assert "SCAN change_reports" not in plan, plan
    else:
        assert "Seq Scan on change_reports" not in plan, plan
        assert "Index" in plan, plan


async def test_the_dashboards_change_mark_seeks_the_newest_deployment(db: Database) -> None:
    """MAX(id) and MAX(updated_at) in one SELECT scanned the whole table on SQLite (118 ms at
    1 000 000 deployments, on every page and once a second while one is open); apart, each
    reads the end of an index."""
    await _seed_without_sqlite_statistics(db)

    async def mark(session: Any) -> None:
        await change_mark(session, datetime.now(UTC))

    (newest, *_) = await _statements_of(db, mark)
    plan = await _plan(db, *newest)
    # (A lone MIN/MAX reads its index's end: SQLite says SEARCH with no condition after it.)
    assert "ix_deployments_updated_at" in plan, plan
    assert "SCAN deployments" not in plan, plan
    assert "Seq Scan on deployments" not in plan, plan


async def test_the_environments_changed_since_are_the_ends_of_two_indexes(db: Database) -> None:
    """The overview reads again only the environments whose deployments changed since it last
    read them: the primary key after the newest id seen, the (updated_at) index after the last
    change seen (less a slack), never the whole table."""
    await _seed_without_sqlite_statistics(db)

    async def changed(session: Any) -> None:
        seen = await deployments_seen(session)
        await environments_changed_since(session, seen, timedelta(seconds=30))

    _, since = await _statements_of(db, changed)
    plan = await _plan(db, *since)
    assert "ix_deployments_updated_at" in plan, plan
    assert "SCAN deployments" not in plan, plan
    assert "Seq Scan on deployments" not in plan, plan


async def test_the_overviews_newest_candidates_are_the_end_of_the_primary_key(
    db: Database,
) -> None:
    """Through the (project_id, version) index SQLite read every candidate of the projects
    and sorted them; backwards along the primary key it stops at the tenth. (PostgreSQL
    chooses by its statistics: on a few rows, a scan and a sort is right.)"""
    if not db.is_sqlite:
        pytest.skip("PostgreSQL plans by its statistics, not by the query's shape")
    await _seed_without_sqlite_statistics(db)
    sent: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    try:
        async with db.read() as session:
            await newest_candidate_facts(session, [1, 2], 10)
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    (statement,) = [(sql, params) for sql, params in sent if "FROM release_candidates" in sql]
    plan = await _plan(db, *statement)
    assert "TEMP B-TREE" not in plan, plan
    assert "SCAN release_candidates" in plan, plan  # the table is its primary key
