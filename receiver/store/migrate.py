"""Numbered SQL migrations, applied in order at start-up.

Files are ``migrations/NNNN_name.sql``. Every replica runs ``migrate()`` when it starts. Each
migration runs in its own transaction together with the row that records it in
``schema_migrations``, so a crash leaves either all of it or none; that transaction first takes
a transaction-level advisory lock and reads the history again, so a second replica waits for the
first one's migration and then finds it applied.

The lock is a transaction's, not the session's, so migrations work through a transaction pooler
(PgBouncer ``pool_mode = transaction``) as they do on a direct connection: a session lock taken
through a pooler stays on whichever server connection ran it, and the unlock may run on another
(the lock then outlives the migration, and every later start waits on it forever). Both kinds of
lock on one key exclude each other, so a replica of an earlier release, which holds the session
lock across all its migrations, and this one still take turns.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import structlog

__all__ = [
    "MIGRATION_LOCK_KEY",
    "Migration",
    "MigrationError",
    "applied_versions",
    "load_migrations",
    "migrate",
]

# An arbitrary constant shared by every replica: "alert-remediator migrations".
MIGRATION_LOCK_KEY = 0x52454D4544_01

_FILE_NAME = re.compile(r"([0-9]{4})_([a-z0-9_]+)\.sql")

_log = structlog.get_logger("remediator.store.migrate")


class MigrationError(RuntimeError):
    """The migration files or the recorded history are not consistent."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The packaged migrations, ordered by version; gaps and duplicates are errors."""
    folder = resources.files("receiver.store") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"migration {expected:04d} is missing or duplicated")
    return found


_CREATE_HISTORY = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def applied_versions(conn: Any) -> list[int]:
    """The versions of the migrations applied on ``conn`` (an asyncpg connection or pool),
    ascending; empty when the schema was never created. Reads only: takes no lock and creates
    nothing, for the commands that read a database they must not change."""
    if await conn.fetchval("SELECT to_regclass('schema_migrations') IS NULL"):
        return []
    rows = await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
    return [row["version"] for row in rows]


async def migrate(conn: Any, migrations: list[Migration] | None = None) -> list[int]:
    """Apply what is missing on ``conn`` (an asyncpg connection); return the versions applied.

    Raises MigrationError when an applied migration's file has changed since it was applied.
    A database that is ahead of this code (a newer replica migrated it) is left alone: the newer
    schema is meant to stay compatible with the previous release during a rolling update.
    """
    migrations = load_migrations() if migrations is None else migrations
    applied_now: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
        await conn.execute(_CREATE_HISTORY)
        applied = await _applied(conn)
    _check_unchanged(migrations, applied)
    for migration in migrations:
        if migration.version in applied:
            continue
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY)
            # Read under the lock: another replica may have applied it since.
            applied = await _applied(conn)
            _check_unchanged(migrations, applied)
            if migration.version in applied:
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        _log.info("applied migration", version=migration.version, name=migration.name)
        applied_now.append(migration.version)
    return applied_now


async def _applied(conn: Any) -> dict[int, str]:
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


def _check_unchanged(migrations: list[Migration], applied: dict[int, str]) -> None:
    """MigrationError when an applied migration's file is not what was applied."""
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d}_{migration.name} was changed "
                "after it was applied; add a new migration instead"
            )
