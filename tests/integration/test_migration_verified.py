"""Migration 0008 on a database that holds runs of the old names: 'resolved' becomes
'verified', and a run failed by its verify deadline says so (verify_result not_resolved)."""

from __future__ import annotations

import asyncpg
import pytest

from receiver.store.migrate import load_migrations, migrate

pytestmark = pytest.mark.postgres

_INSERT = """
INSERT INTO runs (rule, fingerprint, starts_at, target_kind, target_namespace, target_name,
                  outcome, error)
VALUES ($1, 'fp', $1, 'Deployment', 'shop', 'web', $2, $3)
"""


async def test_stored_outcomes_move_to_the_new_names(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        before = [m for m in load_migrations() if m.version < 8]
        await migrate(conn, before)
        await conn.execute(_INSERT, "a", "resolved", None)
        await conn.execute(
            _INSERT, "b", "failed", "alert did not resolve before the verify deadline"
        )
        await conn.execute(_INSERT, "c", "failed", "a step failed; see the run's steps")
        await conn.execute(_INSERT, "d", "succeeded", None)
        assert await migrate(conn) == [m.version for m in load_migrations() if m.version >= 8]
        rows = await conn.fetch("SELECT rule, outcome, verify_result FROM runs ORDER BY rule")
        assert [tuple(r) for r in rows] == [
            ("a", "verified", "verified"),
            ("b", "failed", "not_resolved"),
            ("c", "failed", None),
            ("d", "succeeded", None),
        ]
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(_INSERT, "e", "resolved", None)  # the old name is gone
    finally:
        await conn.close()
