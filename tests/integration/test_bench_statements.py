"""The storm bench tells the statements the service sends from those its PL/pgSQL functions
and triggers run (bench/storm_figures.py), whatever form pg_stat_statements recorded their
constants in. Against a real PostgreSQL, with a stand-in for pg_stat_statements' view."""

from __future__ import annotations

import asyncpg
import pytest

from bench.storm_sql import STATEMENTS

pytestmark = pytest.mark.postgres

BODY = """
CREATE FUNCTION public.bench_probe() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    head text;
    r record;
BEGIN
    PERFORM 1 FROM audit_pending WHERE n = NEW.n;
    SELECT last_hash INTO head FROM audit_head FOR UPDATE;
    FOR r IN SELECT * FROM audit_pending WHERE n >= NEW.n ORDER BY n LOOP
        INSERT INTO audit_log (kind) VALUES ('x', 2);
    END LOOP;
    IF EXISTS (SELECT 1 FROM runs WHERE id = NEW.run_id) THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$$
"""

# (text as pg_stat_statements recorded it, whether a function runs it)
RECORDED = [
    ("SELECT 1 FROM audit_pending WHERE n = NEW.n", True),
    ("SELECT $21 FROM audit_pending WHERE n = NEW.n", True),  # its constant as a parameter
    ("SELECT last_hash FROM audit_head FOR UPDATE", True),
    ("SELECT * FROM audit_pending WHERE n >= NEW.n ORDER BY n", True),
    ("INSERT INTO audit_log (kind) VALUES ($1, $2)", True),
    ("INSERT INTO audit_log (kind) VALUES ('x', 2)", True),
    ("SELECT $1 FROM runs WHERE id = NEW.run_id", True),
    # The client's own: short texts that a body merely contains are not the body's.
    ("SELECT $1", False),
    ("SELECT 1", False),
    ("BEGIN", False),
    ("COMMIT", False),
    ("SELECT count(*) FROM alert_events WHERE state IN ($1, $2)", False),
]


async def test_statements_run_by_functions_are_told_apart_in_any_recorded_form(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(BODY)
        # A stand-in for the extension's view, first on the search path (pg_temp).
        await conn.execute(
            "CREATE TEMP TABLE pg_stat_statements (calls bigint, total_exec_time float8,"
            " total_plan_time float8, query text, dbid oid, userid oid)"
        )
        dbid = await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()")
        for n, (text, _) in enumerate(RECORDED):
            await conn.execute(
                "INSERT INTO pg_stat_statements VALUES ($1, 0, 0, $2, $3, 10)", n + 1, text, dbid
            )
        rows = await conn.fetch(STATEMENTS, "pg_monitor")  # not the recording role
    finally:
        await conn.close()
    found = {r["query"]: r["in_function"] for r in rows}
    assert found == dict(RECORDED)
