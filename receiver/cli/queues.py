"""``remediator events`` and ``remediator jobs``: the work queues of a running server.

``remediator events --dead`` lists the alert events that failed ``worker.max_attempts`` times;
``remediator events retry ID...`` puts them back in the queue and ``remediator events drop
ID... --reason TEXT`` settles them unprocessed (both audited); ``remediator events show ID``
prints one event with the rules skipped for it. ``remediator jobs`` does the same for jobs.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import click

from receiver.cli.client import Interrupted, call_server, check_reason, query_params, url_option
from receiver.cli.common import Choice, Integer, UserError, print_listing, state

__all__ = ["events", "jobs"]

_STATES = ("pending", "claimed", "done", "dead")
# The widest a free-text cell (last error, why, alertname) is shown in a table: a skip reason
# or an error can be kilobytes, and one long cell folded over fifty lines hides the rows around
# it. The whole text is in ``--json`` and ``show ID``.
_CELL_WIDTH = 80
_DONE = {"retry": "retried", "drop": "dropped"}


def _queue_group(kind: str, plural: str, filters: list[Any]) -> click.Group:
    """The ``plural`` command group: list (the group itself), show, retry, drop."""

    @click.pass_context
    def listing(
        ctx: click.Context,
        /,
        url: str | None,
        dead: bool,
        state_name: str | None,
        limit: int | None,
        cursor: str | None,
        as_json: bool,
        **selected: Any,
    ) -> None:
        if ctx.invoked_subcommand is not None:
            return
        if dead and state_name not in (None, "dead"):
            raise click.UsageError("--dead is --state dead; give one of them")
        params = query_params(selected)
        if dead or state_name:
            params["state"] = "dead" if dead else str(state_name)
        params.update({k: str(v) for k, v in (("limit", limit), ("cursor", cursor)) if v})
        path = f"/api/v1/{plural}"
        flags = {"run_id": "--run"}
        data = call_server(
            state(ctx).settings(), url, path, params=params, flags=flags, answer=(plural, list)
        )
        cells = functools.partial(_cells, kind)
        print_listing(data, plural, _COLUMNS[kind], cells, as_json=as_json)

    options = [
        url_option,
        click.option("--dead", is_flag=True, help=f"Only dead {plural} (same as --state dead)."),
        click.option(
            "--state",
            "state_name",
            type=Choice(_STATES),
            help=f"Only {plural} in this state.",
        ),
        *filters,
        click.option("--limit", type=Integer(1, 500), default=None, help="1..500, default 50."),
        click.option("--cursor", default=None, help="next_cursor of a previous page."),
        click.option("--json", "as_json", is_flag=True, help="Print the server's JSON."),
    ]
    decorated: Any = listing
    for option in reversed(options):
        decorated = option(decorated)
    group = click.group(
        plural,
        invoke_without_command=True,
        help=(
            f"List the {plural} of a running server, newest first; show, retry or drop them. "
            "The table cuts a long error, reason or name at 80 characters; --json and "
            "show ID print it whole."
        ),
    )(decorated)
    group.add_command(_show(kind, plural))
    group.add_command(_action(kind, plural, "retry"))
    group.add_command(_action(kind, plural, "drop"))
    return group


def _show(kind: str, plural: str) -> click.Command:
    @click.command("show", help=f"Print {kind} ID as JSON (state, failures, last error, ...).")
    @url_option
    @click.argument("item_id", metavar="ID", type=Integer(1))
    @click.pass_context
    def show(ctx: click.Context, url: str | None, item_id: int) -> None:
        data = call_server(
            state(ctx).settings(), url, f"/api/v1/{plural}/{item_id}", answer=(kind, dict)
        )
        click.echo(json.dumps(data.get(kind) if isinstance(data, dict) else data, indent=2))

    return show


def _action(kind: str, plural: str, action: str) -> click.Command:
    helps = {
        "retry": f"Put the dead {plural} ID... back in the queue, due now (audited).",
        "drop": f"Settle the dead or pending {plural} ID... without processing them (audited).",
    }

    @click.command(action, help=helps[action])
    @url_option
    @click.argument("item_ids", metavar="ID...", type=Integer(1), nargs=-1, required=True)
    @click.option(
        "--reason",
        # No default: with click >= 8.3 an explicit default of None would satisfy required.
        required=action == "drop",
        callback=check_reason,
        help="Why; recorded in the audit log" + (" (required)." if action == "drop" else "."),
    )
    @click.pass_context
    def act(
        ctx: click.Context, url: str | None, item_ids: tuple[int, ...], reason: str | None
    ) -> None:
        settings = state(ctx).settings()
        body = {"reason": reason} if reason else {}
        # An id given twice is acted on once: the second request found it retried (or
        # dropped) already, a 409 that failed the command for work that was done.
        item_ids = tuple(dict.fromkeys(item_ids))
        failed = 0
        for done, item_id in enumerate(item_ids):
            path = f"/api/v1/{plural}/{item_id}/{action}"
            try:
                data = call_server(settings, url, path, "POST", body=body, answer=(kind, dict))
            except (KeyboardInterrupt, Interrupted):
                # Ctrl-C said only "Aborted!": which items were acted on, and whether the one
                # on its way was, the operator had to find out id by id.
                raise _Interrupted(kind, plural, action, item_id, item_ids[done + 1 :]) from None
            except UserError as exc:
                failed += 1
                click.echo(f"{kind} {item_id}: {exc.format_message()}", err=True)
                continue
            item = data.get(kind, {}) if isinstance(data, dict) else {}
            said = _what_ended(item)
            click.echo(f"{kind} {item_id}: {_DONE[action]}, now {item.get('state', '?')}{said}")
        if failed:
            raise UserError(f"{failed} of {len(item_ids)} {plural} not {_DONE[action]}")

    return act


class _Interrupted(UserError):
    """Ctrl-C during a bulk ``retry``/``drop``: the item whose request was on its way (the
    server may have acted on it) and those never asked for; exit code 1, as click's Abort."""

    def __init__(
        self, kind: str, plural: str, action: str, item_id: int, left: tuple[int, ...]
    ) -> None:
        message = (
            f"interrupted: {kind} {item_id} may or may not be {_DONE[action]} (see"
            f" `remediator {plural} show {item_id}`)"
        )
        if left:
            message += f"; not {_DONE[action]}, never sent: {' '.join(map(str, left))}"
        super().__init__(message)


def _what_ended(item: dict[str, Any]) -> str:
    """What a dropped job ended with it (store/job_ends.py), as the server's answer says, each
    part after "; "; empty for anything else. A step a worker had stopped in is
    ``interrupted`` (it may have acted), not "not run"."""
    ended, steps = item.get("run_ended"), item.get("steps_ended") or []
    said = f"; its run {item.get('run_id')} ended {ended}" if ended else ""
    interrupted = item.get("steps_interrupted") or []
    unrun = [s for s in steps if s not in interrupted]
    if unrun:
        said += f"; {_steps(unrun)} not run"
    if interrupted:
        said += f"; {_steps(interrupted)} interrupted (a worker stopped in it: it may have acted)"
    lock = item.get("target_lock")
    if isinstance(lock, dict) and lock.get("released") is not True:
        said += f"; target lock: {lock.get('note') or 'not held by the run'}"
    if item.get("not_done"):
        said += f"; not done: {item['not_done']}"
    return said


def _steps(indexes: list[Any]) -> str:
    return ("step " if len(indexes) == 1 else "steps ") + ", ".join(map(str, indexes))


_COLUMNS = {
    "event": (
        "id",
        "received",
        "alertname",
        "status",
        "state",
        "failed/tries",
        "last error",
        "why",
    ),
    "job": ("id", "created", "kind", "run", "state", "failed/tries", "last error", "why"),
}


def _cells(kind: str, row: dict[str, Any]) -> tuple[str, ...]:
    # failed/tries: failed attempts / attempts (every claim, waits included).
    tries = f"{row.get('failures', 0)}/{row.get('attempts', 0)}"
    error = str(row.get("last_error") or "")
    why = str(row.get("settled_reason") or "")
    skips = row.get("skips") or []
    if not why and skips:
        why = "; ".join(f"{s.get('rule') or '*'}: {s.get('reason')}" for s in skips)
    if kind == "event":
        head = (row.get("received_at"), row.get("alertname"), row.get("status"))
    else:
        head = (row.get("created_at"), row.get("kind"), row.get("run_id"))
    return (
        str(row.get("id", "")),
        *(_clipped(str(v or "")) for v in head),
        str(row.get("state", "")),
        tries,
        _clipped(error),
        _clipped(why),
    )


def _clipped(text: str) -> str:
    """``text`` cut to ``_CELL_WIDTH`` characters, its end an ellipsis when cut."""
    return text if len(text) <= _CELL_WIDTH else text[: _CELL_WIDTH - 1] + "…"


events = _queue_group(
    "event",
    "events",
    [
        click.option("--alertname", default=None, help="Only events of this alertname."),
        click.option("--fingerprint", default=None, help="Only events of this alert."),
        click.option(
            "--skipped/--not-skipped",
            default=None,
            help="Only events for which rules were skipped (or none were).",
        ),
    ],
)
jobs = _queue_group(
    "job",
    "jobs",
    [
        click.option(
            "--kind",
            default=None,
            help=(
                "Only jobs of this kind: resume_run, verify_deadline, resume_resolve, "
                "release_lock, finish_end."
            ),
        ),
        click.option("--run", "run_id", default=None, help="Only the jobs of this run (its id)."),
    ],
)
