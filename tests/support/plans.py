"""Reading PostgreSQL's own account of a statement: EXPLAIN (ANALYZE, FORMAT JSON)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["execute_sql", "explain_analyze", "rows_read"]


async def explain_analyze(conn: Any, sql: str, *args: Any) -> dict[str, Any]:
    """The plan PostgreSQL ran for ``sql`` with ``args`` (the statement is executed: run it in
    a transaction the caller rolls back if it writes)."""
    raw = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
    plan: dict[str, Any] = json.loads(raw)[0]["Plan"]
    return plan


def rows_read(plan: dict[str, Any], relation: str) -> int:
    """Rows the plan's scans of ``relation`` read: returned plus filtered out, every loop."""
    total = 0
    if plan.get("Relation Name") == relation:
        loops = int(plan.get("Actual Loops", 1))
        returned = float(plan.get("Actual Rows", 0))
        removed = float(plan.get("Rows Removed by Filter", 0)) + float(
            plan.get("Rows Removed by Index Recheck", 0)
        )
        total += round((returned + removed) * loops)
    for child in plan.get("Plans", []):
        total += rows_read(child, relation)
    return total


async def execute_sql(conn: Any, name: str, args: tuple[Any, ...] | list[Any]) -> str:
    """``EXECUTE name (...)`` of a statement PREPAREd on ``conn``, with ``args`` written as
    literals (EXECUTE takes no bind parameters; lists as array literals, None as NULL)."""
    literals = [await conn.fetchval("SELECT quote_nullable($1::text)", _text(a)) for a in args]
    return f"EXECUTE {name} ({', '.join(literals)})"


def _text(value: object) -> str | None:
    """A parameter as PostgreSQL's text input reads it."""
    if value is None:
        return None
    if isinstance(value, list):
        return "{" + ",".join("NULL" if i is None else f'"{i}"' for i in value) + "}"
    return str(value)
