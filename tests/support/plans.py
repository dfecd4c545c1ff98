"""Reading PostgreSQL's own account of a statement: EXPLAIN (ANALYZE, FORMAT JSON)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["explain_analyze", "rows_read"]


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
