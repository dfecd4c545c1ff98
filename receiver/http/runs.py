"""The run log: ``GET /api/v1/runs`` (a filtered page) and ``GET /api/v1/runs/{run_id}`` (one
run with its steps and audit entries)."""

from __future__ import annotations

from aiohttp import web

from receiver.http.deps import CLOCK, RUNS_READER
from receiver.http.filters import BadParameter, run_filters
from receiver.http.responses import json_response, list_row, row
from receiver.store import StoreUnavailable

__all__ = ["RUNS_PATH", "get_run", "get_runs"]

RUNS_PATH = "/api/v1/runs"


async def get_runs(request: web.Request) -> web.Response:
    """``{runs, next_cursor}``; 400 naming the parameter that is wrong; 503 without a store."""
    try:
        filters = run_filters(request.query, request.app[CLOCK]())
    except BadParameter as exc:
        return json_response({"error": exc.message, "parameter": exc.parameter}, 400)
    try:
        rows, next_cursor = await request.app[RUNS_READER].list_runs(**filters)
    except StoreUnavailable:
        return json_response({"error": "store unavailable"}, 503)
    return json_response({"runs": [list_row(r) for r in rows], "next_cursor": next_cursor})


async def get_run(request: web.Request) -> web.Response:
    """``{run, audit}``; 404 for an unknown run; 503 without a store."""
    run_id = request.match_info["run_id"]
    reader = request.app[RUNS_READER]
    try:
        run = await reader.get_run(run_id, with_steps=True)
        audit = await reader.audit_entries(run_id) if run is not None else []
    except StoreUnavailable:
        return json_response({"error": "store unavailable"}, 503)
    if run is None:
        return json_response({"error": f"no run {run_id}"}, 404)
    return json_response({"run": row(run), "audit": audit})
