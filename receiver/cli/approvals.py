"""``remediator approvals list|approve|reject``: approvals of a running server.

The CLI decides as an operator: it sends the operator token every operator command sends
(``REMEDIATOR_OPERATOR_TOKEN(_FILE)``, or the embedded default's, see ``client.py``), which the
server maps to a name and checks against the approvers' allow-list, as it does for the
confirmation page and the API.
"""

from __future__ import annotations

import re
from typing import Any

import click

from receiver.cli.client import call_server, check_reason, query_params, url_option
from receiver.cli.common import Choice, Integer, echoed, print_listing, state
from receiver.model import ApprovalState

__all__ = ["approvals"]


@click.group()
def approvals() -> None:
    """Approvals of risky steps: list them, approve or reject one."""


@approvals.command("list")
@url_option
@click.option(
    "--state",
    "state_",
    type=Choice([s.value for s in ApprovalState]),
    default=None,
    help="Only approvals in this state.",
)
@click.option("--rule", default=None, help="Only approvals of this rule.")
@click.option("--run", "run_id", default=None, help="Only approvals of this run (its id).")
@click.option("--since", default=None, help="RFC 3339 timestamp or a duration like 24h.")
@click.option("--limit", type=Integer(1, 500), default=None, help="1..500, default 50.")
@click.option("--json", "as_json", is_flag=True, help="Print the server's JSON.")
@click.pass_context
def list_(
    ctx: click.Context,
    url: str | None,
    state_: str | None,
    rule: str | None,
    run_id: str | None,
    since: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List approvals, newest first."""
    params = query_params(
        {"state": state_, "rule": rule, "run": run_id, "since": since, "limit": limit}
    )
    data = call_server(
        state(ctx).settings(), url, "/api/v1/approvals", params=params, answer=("approvals", list)
    )
    print_listing(data, "approvals", _COLUMNS, _cells, as_json=as_json)


_COLUMNS = ("id", "state", "rule", "target", "action", "risk", "expires", "decided by")


def _cells(row: dict[str, Any]) -> list[str]:
    target = row.get("target") or {}
    where = "/".join(str(target.get(k)) for k in ("kind", "namespace", "name") if target.get(k))
    return [
        str(row.get("id", "")),
        str(row.get("state", "")),
        str(row.get("rule", "")),
        where,
        str(row.get("action", "")),
        str(row.get("risk", "")),
        str(row.get("expires_at", "")),
        str(row.get("decided_by") or ""),
    ]


# An approval's id as the server shows it (a UUID, lower or upper case), in ASCII only: uuid.UUID()
# would read other scripts' digits through int().
_APPROVAL_ID = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I | re.A
)


class _ApprovalId(click.ParamType[str]):
    """APPROVAL_ID: a UUID as ``approvals list`` shows it, else a usage error (exit 2) before
    anything is sent. The id goes into the request's path: a ``#`` in it cut the path there
    (``reject ID/approve#`` approved ID), and aiohttp dropped a byte that is not UTF-8
    (``approve ID<0xff>`` decided ID)."""

    name = "approval id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """``value`` in lower case when it is an approval's id."""
        text = str(value)
        if not _APPROVAL_ID.fullmatch(text):
            self.fail(
                f"{echoed(text)} is not an approval id: give the id (a UUID such as"
                " 0b5e4f6a-1c2d-4e3f-8a9b-0c1d2e3f4a5b) that 'approvals list' shows",
                param,
                ctx,
            )
        return text.lower()


def _decide(ctx: click.Context, url: str | None, path: str, **body: Any) -> None:
    settings = state(ctx).settings()
    data = call_server(
        settings,
        url,
        path,
        "POST",
        body={k: v for k, v in body.items() if v},
        answer=("approval", dict),
        check="`remediator approvals list`",
    )
    approval = data.get("approval", {}) if isinstance(data, dict) else {}
    click.echo(
        f"{approval.get('state', '?')} by {approval.get('decided_by', '?')}: "
        f"{(approval.get('plan') or {}).get('summary', approval.get('action', ''))}"
    )


@approvals.command()
@url_option
@click.argument("approval_id", type=_ApprovalId())
@click.option("--reason", default=None, callback=check_reason, help="Why (kept in the audit log).")
@click.pass_context
def approve(
    ctx: click.Context,
    url: str | None,
    approval_id: str,
    reason: str | None,
) -> None:
    """Approve APPROVAL_ID: the step runs if its guards and its target still agree."""
    _decide(ctx, url, f"/api/v1/approvals/{approval_id}/approve", reason=reason)


@approvals.command()
@url_option
@click.argument("approval_id", type=_ApprovalId())
@click.option(
    "--reason",
    required=True,
    callback=check_reason,
    help="Why (kept in the audit log and on the run).",
)
@click.pass_context
def reject(ctx: click.Context, url: str | None, approval_id: str, reason: str) -> None:
    """Reject APPROVAL_ID: its run ends rejected, with your name and reason."""
    _decide(ctx, url, f"/api/v1/approvals/{approval_id}/reject", reason=reason)
