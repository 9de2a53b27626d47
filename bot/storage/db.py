"""The database: engine, sessions for reading and for writing, and migrations.

SQLite (the embedded default) allows one writer at a time, so write transactions take an
in-process lock and start with BEGIN IMMEDIATE (another process, such as `tarmac token create`
next to a running server, waits on busy_timeout instead of failing). PostgreSQL runs writers in
parallel; the use cases lock the environment row they decide on (`find_environment(lock=True)`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from bot.storage import sqlite_inline

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Any constant works; it only has to be the same in every replica.
MIGRATION_ADVISORY_LOCK = 7_243_571_001


# A PostgreSQL that takes connections but never answers must not hold a request until TCP
# gives up: connecting, and then each statement, fail after this long (the request gets 503).
DEFAULT_STATEMENT_TIMEOUT_SECONDS = 10.0
CONNECT_TIMEOUT_SECONDS = 5.0
# libpq's sslmode, as PostgreSQL URLs carry it, is asyncpg's `ssl` (which takes these modes).
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

# A connection SQLite opened while the file could not be written (a chmod, a read-only mount)
# is read-only for good: it fails every write with SQLITE_READONLY after the file is writable
# again, until the process restarts; so does one whose file was replaced (READONLY_DBMOVED).
# Such a connection is discarded on its first failed write, and the pool opens a new one.
# I/O errors and a full disk leave a connection working once the disk does (SQLite rolls the
# transaction back), and it is kept: a fresh connection would have to regrow the -shm file,
# which a full disk refuses, so dropping it would fail the reads that still work.
SQLITE_BROKEN_CONNECTION_ERRORS = frozenset({sqlite3.SQLITE_READONLY})
# A write that changes nothing and still reaches the disk (the row is rewritten with its own
# value): what readiness runs to learn whether writes work again.
WRITE_PROBE = text("UPDATE alembic_version SET version_num = version_num")

# Set in a write session's `info` by whatever adds an outbox item (`note_outbox_enqueued`):
# once that transaction commits, the outbox workers are told (see `Database.write()`).
OUTBOX_ENQUEUED = "tarmac_outbox_enqueued"
# PostgreSQL: the channel a committed outbox item is announced on, to every replica's listener
# (bot/storage/outbox_listener.py). The payload is the announcing process's `origin`.
OUTBOX_CHANNEL = "tarmac_outbox"
_ANNOUNCE = text(f"SELECT pg_notify('{OUTBOX_CHANNEL}', :origin)")


def note_outbox_enqueued(session: AsyncSession) -> None:
    """The session's transaction adds outbox items: wake the workers once it has committed."""
    session.info[OUTBOX_ENQUEUED] = True


def create_engine(
    database_url: str, *, statement_timeout: float | None = DEFAULT_STATEMENT_TIMEOUT_SECONDS
) -> AsyncEngine:
    """The engine for `database_url`; `statement_timeout` None for migrations, whose DDL may
    take long on a large database."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        # Calls made on the event loop's thread, not aiosqlite's (see bot/storage/sqlite_inline.py).
        connect_args = {
            "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000,
            "async_creator_fn": sqlite_inline.connect,
        }
        engine = create_async_engine(url, connect_args=connect_args)
        _configure_sqlite(engine)
        return engine
    asyncpg_args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT_SECONDS}
    if statement_timeout is not None:
        asyncpg_args["command_timeout"] = statement_timeout
    sslmode = url.query.get("sslmode")
    if sslmode is not None:
        asyncpg_args["ssl"] = sslmode
        url = url.difference_update_query(["sslmode"])
    return create_async_engine(
        url, pool_size=10, max_overflow=10, pool_pre_ping=True, connect_args=asyncpg_args
    )


def sslmode_problem(database_url: str) -> str | None:
    """What is wrong with a PostgreSQL URL's sslmode, if anything."""
    url = make_url(database_url)
    mode = url.query.get("sslmode")
    if mode is None or url.get_backend_name() != "postgresql":
        return None
    if not isinstance(mode, str) or mode not in SSL_MODES:
        return f"sslmode must be one of {', '.join(SSL_MODES)}"
    return None


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, say when a transaction begins (see on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # FULL: a commit is on disk before the answer leaves, so an accepted delivery or
        # deployment survives a power loss too, not only a crash of the process (NORMAL).
        # Concurrent webhook deliveries share a commit, which keeps the fsyncs few.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "handle_error")
    def on_error(context: ExceptionContext) -> None:
        code = getattr(context.original_exception, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in SQLITE_BROKEN_CONNECTION_ERRORS:
            reason = failure_reason(context.original_exception)
            log.warning("SQLite connection cannot write (%s): discarded", reason)
            context.is_disconnect = True
            # Only this one: the others were opened at other times, and one that can write
            # keeps the WAL's shared memory alive for the reads.
            context.invalidate_pool_on_disconnect = False

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get("tarmac_write"):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


def failure_reason(exc: BaseException) -> str:
    """What failed, in words safe for logs and answers: SQLite's error name
    (SQLITE_READONLY, SQLITE_IOERR_WRITE, ...) or the driver's exception class, never the
    message (it may quote the statement's parameters)."""
    cause = getattr(exc, "orig", None) or exc
    name = getattr(cause, "sqlite_errorname", None)
    return name if isinstance(name, str) else type(cause).__name__


class Database:
    """Owns the engine; hands out read sessions and serialised write sessions.

    `write_failure` is why the newest write transaction failed on the database's side (see
    `failure_reason`), None once one commits: readiness reports it.

    A write transaction that added outbox items wakes the outbox workers, only once it has
    committed (a worker woken before would find nothing): this process's through the callbacks
    of `on_outbox_committed`, called after the commit; on PostgreSQL the other replicas' through
    a `pg_notify` sent inside the transaction, which PostgreSQL delivers at the commit (and
    drops on a rollback). `origin` tells this process's notifications from the others'.
    """

    def __init__(self, engine: AsyncEngine, database_url: str | None = None) -> None:
        self.engine = engine
        self._database_url = database_url  # to migrate through an engine without timeouts
        self.is_sqlite = engine.dialect.name == "sqlite"
        self._read_sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._write_sessions = async_sessionmaker(
            engine.execution_options(tarmac_write=True), expire_on_commit=False
        )
        self._sqlite_writer = asyncio.Lock()
        self.write_failure: str | None = None
        self.origin = secrets.token_hex(8)
        self._outbox_wakers: list[Callable[[], None]] = []
        # Off only to measure what the wake saves (bench/latency.py): then the workers find
        # new items at their next poll, as before.
        self.wakes_outbox = True

    @classmethod
    def from_url(
        cls, database_url: str, *, statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT_SECONDS
    ) -> Database:
        return cls(create_engine(database_url, statement_timeout=statement_timeout), database_url)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read_sessions() as session:
            yield session

    @property
    def database_url(self) -> str | None:
        return self._database_url

    def on_outbox_committed(self, wake: Callable[[], None]) -> None:
        """Call `wake` after every write transaction of this process that added outbox items
        has committed."""
        self._outbox_wakers.append(wake)

    def outbox_committed(self) -> None:
        """Outbox items were committed (by this process, or another one announced them)."""
        for wake in self._outbox_wakers:
            wake()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One transaction that commits when the block ends and rolls back if it raises."""
        try:
            if self.is_sqlite:
                async with self._sqlite_writer, self._write_sessions() as session, session.begin():
                    yield session
            else:
                async with self._write_sessions() as session, session.begin():
                    yield session
                    if session.info.get(OUTBOX_ENQUEUED) and self.wakes_outbox:
                        await session.execute(_ANNOUNCE, {"origin": self.origin})
        except (DBAPIError, OSError) as exc:
            # What the API answers 503 for; a unique key taken is the caller's business.
            if not isinstance(exc, IntegrityError):
                self.write_failure = failure_reason(exc)
            raise
        except Exception as exc:
            await self._keep_after_rollback(getattr(exc, "after_rollback", ()))
            raise
        self.write_failure = None
        if session.info.pop(OUTBOX_ENQUEUED, False) and self.wakes_outbox:
            self.outbox_committed()

    async def _keep_after_rollback(
        self, kept: Sequence[Callable[[AsyncSession], Awaitable[None]]]
    ) -> None:
        """What a refused change still records (errors.DomainError.after_rollback), in its
        own transaction once the refused one rolled back; a failure to record it is logged
        and leaves the refusal to be answered."""
        for keep in kept:
            try:
                async with self.write() as session:
                    await keep(session)
            except (DBAPIError, OSError):
                log.warning("could not record what a refused change keeps", exc_info=True)

    async def probe_write(self) -> None:
        """One write that changes nothing, through `write()` (so its outcome is recorded as
        any write's). Tried a second time when the first found its connection broken and
        discarded it: a connection a past fault left behind says nothing about writes now."""
        try:
            async with self.write() as session:
                await session.execute(WRITE_PROBE)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            async with self.write() as session:
                await session.execute(WRITE_PROBE)

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()

    async def migrate(self) -> None:
        """Bring the schema to the newest migration; safe to run from several replicas at once.

        Raises SchemaNewerThanCode when a newer Tarmac has migrated the database already."""
        current = await self.ensure_schema_known()
        if current == head_revision():
            return  # the usual start: no lock to wait for, no migration environment to load
        # Waiting for another replica's migration, or DDL on a large table, may take longer
        # than a statement may take while serving.
        engine = self.engine
        if not self.is_sqlite and self._database_url is not None:
            engine = create_engine(self._database_url, statement_timeout=None)
        try:
            await self._migrate_with(engine)
        finally:
            if engine is not self.engine:
                await engine.dispose()

    async def _migrate_with(self, engine: AsyncEngine) -> None:
        async with engine.connect() as connection:
            if not self.is_sqlite:
                await connection.execute(
                    text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_ADVISORY_LOCK}
                )
            try:
                await connection.run_sync(_upgrade_to_head)
                await connection.commit()
            finally:
                if not self.is_sqlite:
                    await connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_ADVISORY_LOCK}
                    )
                    await connection.commit()

    async def ensure_schema_known(self) -> str | None:
        """The schema's revision; SchemaNewerThanCode if this code does not ship it."""
        current = await self.current_revision()
        if current is not None and current not in known_revisions():
            raise SchemaNewerThanCode(current)
        return current

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )


class SchemaNewerThanCode(Exception):
    """The database's schema revision is not one this code ships: a newer Tarmac migrated it.
    Downgrades are not run: the newer code's rows may not fit the older schema."""

    def __init__(self, revision: str) -> None:
        super().__init__(
            f"the database is at schema revision {revision}, which this Tarmac does not know "
            f"(its newest is {head_revision()}): a newer version migrated it. Run that version, "
            "or restore a backup taken before the upgrade (docs/operations.md, Upgrading)"
        )
        self.revision = revision


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@functools.cache
def head_revision() -> str | None:
    """The newest migration shipped with this code (read once: the files do not change)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every migration shipped with this code."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return frozenset(script.revision for script in scripts.walk_revisions())


def _upgrade_to_head(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
