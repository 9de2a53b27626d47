"""`tarmac backup`: a consistent copy of the SQLite database, safe while Tarmac serves.

A plain `cp tarmac.db` taken while the server runs misses the writes still in the WAL file
(`tarmac.db-wal`), and may catch the file between two pages of a checkpoint. SQLite's online
backup API copies the database as one transaction sees it — WAL included — while other
connections go on writing; the copy holds every write committed before it began. PostgreSQL has
`pg_dump` for that, which Tarmac does not wrap.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from bot.core.files import sync_directory

BUSY_TIMEOUT_MS = 30_000


class BackupRefused(Exception):
    """The database cannot be backed up by Tarmac (the message says what to do instead)."""


@dataclass(frozen=True)
class BackupReport:
    source: Path
    destination: Path
    pages: int
    size_bytes: int
    revision: str | None


def sqlite_file(database_url: str) -> Path:
    """The SQLite file of a database URL; BackupRefused for anything else."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        raise BackupRefused(
            "tarmac backup copies SQLite databases; for PostgreSQL use pg_dump "
            "(docs/operations.md, Backups)"
        )
    if not url.database or url.database == ":memory:":
        raise BackupRefused("the database is in memory: there is nothing to back up")
    return Path(url.database)


def backup_database(database_url: str, destination: Path) -> BackupReport:
    """Copy the live database to `destination` (mode 0600), replacing it only once the copy
    is complete and checked, so a failed backup never leaves half a file under that name."""
    source = sqlite_file(database_url)
    if not source.exists():
        raise BackupRefused(f"no database at {source}")
    if destination.resolve() == source.resolve():
        raise BackupRefused("the backup would overwrite the database itself")
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial_name = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent
    )
    os.close(descriptor)  # mkstemp made it 0600; SQLite opens it by name
    partial = Path(partial_name)
    try:
        pages = _copy(source, partial)
        revision = _check(partial)
        os.replace(partial, destination)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    sync_directory(destination.parent)
    return BackupReport(
        source=source,
        destination=destination,
        pages=pages,
        size_bytes=destination.stat().st_size,
        revision=revision,
    )


def _copy(source: Path, destination: Path) -> int:
    # Read-only: the backup never writes to the live database, not even a WAL checkpoint.
    live = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        copy = sqlite3.connect(destination)
        try:
            # All pages in one step: one read transaction, so one consistent snapshot. In WAL
            # mode it does not block writers (copied in steps, every write of another process
            # between two steps would restart the copy, forever under load).
            live.backup(copy)
            # One file, no -wal beside it: the backup is complete on its own.
            copy.execute("PRAGMA journal_mode=DELETE")
            pages = int(copy.execute("PRAGMA page_count").fetchone()[0])
            copy.commit()
        finally:
            copy.close()
    finally:
        live.close()
    with destination.open("rb+") as written:
        os.fsync(written.fileno())
    return pages


def _check(path: Path) -> str | None:
    """The copy passes SQLite's integrity check; returns its schema revision."""
    copy = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = copy.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            raise BackupRefused(f"the copy failed SQLite's integrity check: {result}")
        try:
            row = copy.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:
            return None  # never migrated: an empty database
        return str(row[0]) if row else None
    finally:
        copy.close()
