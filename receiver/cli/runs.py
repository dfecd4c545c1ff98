"""``remediator runs``: the run log of a running server."""

from __future__ import annotations

from typing import Any

import click

from receiver.cli.client import call_server, query_params, url_option
from receiver.cli.common import Integer, print_listing, state
from receiver.model import RunOutcome
from remediations.targets import Target

__all__ = ["runs"]


@click.command()
@url_option
@click.option("--alertname", default=None, help="Only runs of alerts with this alertname.")
@click.option("--rule", default=None, help="Only runs of this rule.")
@click.option("--target", default=None, help="Only runs on this target: kind/namespace/name.")
@click.option(
    "--outcome",
    default=None,
    help="Only runs with this outcome: " + ", ".join(o.value for o in RunOutcome) + ".",
)
@click.option("--since", default=None, help="RFC 3339 timestamp or a duration like 24h.")
@click.option("--limit", type=Integer(1, 500), default=None, help="1..500, default 50.")
@click.option("--cursor", default=None, help="next_cursor of a previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON.")
@click.pass_context
def runs(
    ctx: click.Context,
    url: str | None,
    alertname: str | None,
    rule: str | None,
    target: str | None,
    outcome: str | None,
    since: str | None,
    limit: int | None,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List remediation runs from a running server."""
    params = query_params(
        {
            "alertname": alertname,
            "rule": rule,
            "target": target,
            "outcome": outcome,
            "since": since,
            "limit": limit,
            "cursor": cursor,
        }
    )
    data = call_server(
        state(ctx).settings(), url, "/api/v1/runs", params=params, answer=("runs", list)
    )
    print_listing(
        data, "runs", _COLUMNS, lambda row: [_cell(row, c) for c in _COLUMNS], as_json=as_json
    )


_FAILED_HOW = {"not_resolved": "not resolved", "recurred": "recurred"}
# A run whose alert resolved before its first step acted: succeeded, the rule not credited.
_EARLY = "resolved_before_action"

# Where each column's value may sit in a row, first match wins.
_CELL_KEYS = {
    "id": ("id", "run_id"),
    "created": ("created_at", "created"),
    "alertname": ("alertname",),
    "rule": ("rule",),
    "target": ("target",),
    "outcome": ("outcome",),
}
_COLUMNS = tuple(_CELL_KEYS)


def _cell(row: dict[str, Any], column: str) -> str:
    result = row.get("verify_result")
    if column == "outcome" and row.get("outcome") == "failed" and result in _FAILED_HOW:
        # A failed verification says how: "failed (recurred)", "failed (not resolved)".
        return f"failed ({_FAILED_HOW[result]})"
    if column == "outcome" and row.get("outcome") == "succeeded" and result == _EARLY:
        # Not a plain success: the alert had resolved before the steps acted.
        return "succeeded (resolved before action)"
    for key in _CELL_KEYS[column]:
        if key in row and row[key] is not None:
            value = row[key]
            if isinstance(value, dict) and {"kind", "name"} <= value.keys():
                # kind/namespace/name, or kind/name for kinds that live in no namespace.
                target = Target(
                    str(value["kind"]), str(value.get("namespace") or ""), str(value["name"])
                )
                return target.key
            return str(value)
    return ""
