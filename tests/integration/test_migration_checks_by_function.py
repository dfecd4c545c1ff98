"""Migration 0044: runs' and steps' CHECK constraints call functions instead of holding their
lists, which PostgreSQL parsed back from text for every statement that wrote the table; the
values they allow and refuse, and the constraints' names, are the same."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from receiver.model import RunOutcome, VerifyResult
from receiver.store.migrate import migrate

pytestmark = pytest.mark.postgres

_RUN = """
INSERT INTO runs (rule, fingerprint, starts_at, target_kind, target_namespace, target_name,
                  outcome, verify_result)
VALUES ($1, 'fp', 'now', 'Deployment', 'shop', 'web', $2, $3)
RETURNING id
"""

_STEP = """
INSERT INTO steps (run_id, phase, idx, action, params, outcome)
VALUES ($1, $2, $3, 'http.request', '{}', 'pending')
"""

# What the server parses at every statement writing the table: each constraint's stored
# expression. An IN list of n values stores n constants printed byte by byte (2,564 bytes for
# runs' outcomes); a call with one column, a few hundred.
_STORED = """
SELECT conname, length(conbin::text) FROM pg_constraint
WHERE conrelid IN ('runs'::regclass, 'steps'::regclass) AND contype = 'c'
ORDER BY conname
"""


async def test_stored_checks_are_small(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn)
        stored = {row[0]: row[1] for row in await conn.fetch(_STORED)}
        assert set(stored) == {
            "runs_outcome_check",
            "runs_refire_check",
            "runs_verify_result_check",
            "steps_phase_check",
        }
        assert {name: size for name, size in stored.items() if size > 600} == {}
    finally:
        await conn.close()


async def test_the_same_values_pass_and_fail(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn)
        for outcome in RunOutcome:
            await conn.fetchval(_RUN, f"rule-{outcome}", str(outcome), None)
        for result in VerifyResult:
            await conn.fetchval(_RUN, f"verified-{result}", "failed", str(result))
        with pytest.raises(asyncpg.CheckViolationError, match="runs_outcome_check"):
            await conn.fetchval(_RUN, "unknown", "resolved", None)
        with pytest.raises(asyncpg.CheckViolationError, match="runs_verify_result_check"):
            await conn.fetchval(_RUN, "unknown", "failed", "timed_out")
        # Case and blanks count, as they did in the IN list.
        with pytest.raises(asyncpg.CheckViolationError, match="runs_outcome_check"):
            await conn.fetchval(_RUN, "upper", "Pending", None)
        with pytest.raises(asyncpg.CheckViolationError, match="runs_outcome_check"):
            await conn.fetchval(_RUN, "blank", " pending", None)

        run_id: uuid.UUID = await conn.fetchval(_RUN, "steps", "running", None)
        for idx, phase in enumerate(("run", "resolve", "on_failed")):
            await conn.execute(_STEP, run_id, phase, idx)
        with pytest.raises(asyncpg.CheckViolationError, match="steps_phase_check"):
            await conn.execute(_STEP, run_id, "undo", 9)
        with pytest.raises(asyncpg.NotNullViolationError):
            await conn.execute(_STEP, run_id, None, 10)
        # An UPDATE is checked as an INSERT is.
        with pytest.raises(asyncpg.CheckViolationError, match="runs_outcome_check"):
            await conn.execute("UPDATE runs SET outcome = 'done' WHERE id = $1", run_id)
    finally:
        await conn.close()
