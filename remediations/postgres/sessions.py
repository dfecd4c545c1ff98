"""``postgres.terminate_idle`` and ``postgres.cancel_long_queries``: signal backends, safely.

Both read ``pg_stat_activity`` through one SQL statement per action (``sql/``) that filters and
signals at once. The filter, fixed in the SQL and not up to a rule: client backends only (no
walsender, autovacuum or background worker), never this session nor any other session of the
role the service connects as, never a superuser or a replication role. Up to the rule: the
allow-listed roles (required), the databases (default: the one the connection is to), the
applications never touched, the threshold and the cap.

``preview()`` runs the statement without signalling and lists exactly the sessions it would
signal (pid, role, database, application, state, and since when: the state's or the statement's
start). ``run()`` runs it again with the signal: what was previewed but no longer matches (a
session that turned active, or ended) is spared, since the filter and the signal are one
statement.

Both refuse (ActionRefused) when the role the service connects as cannot see the allow-listed
roles' sessions (it lacks ``pg_read_all_stats``), when none of those roles exists on the
server or each is one the filter above never signals, and when none of the databases listed
exists; either way no session would ever match, and the step would record ``noop`` "no
session matches" for ever (``visibility.py``). A "no session matches" names the listed roles
and databases that could never match. They refuse too, before any signal, when it cannot
signal those roles' sessions (it lacks ``pg_signal_backend``).

An approval binds the preview (``receiver.approvals.plan``), so the preview names each session
by its start, never by its age: an age grows every second and no approval would ever match its
fresh preview. An approved step signals only the (pid, since) pairs the approver saw
(``ActionContext.approved``): a session that went active and idle again since, or one that
crossed the threshold after the approval, is not signalled on that approval.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, field_validator

from remediations.base import (
    ActionContext,
    ActionRefused,
    Change,
    Outcome,
    ParamsError,
    Result,
    Risk,
)
from remediations.durations import format_duration
from remediations.params import Duration, Integer, StrictParams
from remediations.postgres.connection import PostgresConnection
from remediations.postgres.visibility import RolesSeen, roles_note, roles_seen
from remediations.targets import Target

__all__ = [
    "DEFAULT_EXCLUDED_APPLICATIONS",
    "CancelLongQueries",
    "CancelLongQueriesParams",
    "Session",
    "TerminateIdle",
    "TerminateIdleParams",
]

# Maintenance tools whose sessions are long or idle by design; a rule can change the list.
DEFAULT_EXCLUDED_APPLICATIONS = (
    "pg_dump",
    "pg_dumpall",
    "pg_restore",
    "pg_basebackup",
    "pg_rewind",
)

IdleState = Literal["idle in transaction", "idle in transaction (aborted)", "idle"]

_NAMEDATALEN = 63  # PostgreSQL identifiers are at most 63 bytes


def _sql(name: str) -> str:
    return resources.files("remediations.postgres").joinpath("sql", name).read_text("utf-8")


def _names(values: Sequence[str], what: str) -> Sequence[str]:
    for value in values:
        if not value or "\x00" in value or len(value.encode()) > _NAMEDATALEN:
            raise ValueError(f"{value!r} is not a PostgreSQL {what} name (1 to 63 bytes, no NUL)")
    if len(set(values)) != len(values):
        raise ValueError(f"{what}s are listed twice")
    return values


def _applications(values: Sequence[str]) -> Sequence[str]:
    # PostgreSQL keeps an application_name as printable ASCII ('?' or '\xNN' for the rest) cut
    # at 63 bytes: a name listed otherwise never matches, and its session would be signalled.
    for value in values:
        if any(not " " <= char <= "~" for char in value):
            why = "shows an application_name in printable ASCII only"
        elif len(value) > _NAMEDATALEN:
            why = f"keeps only the first {_NAMEDATALEN} bytes of an application_name"
        else:
            continue
        raise ValueError(
            f"{value!r}: PostgreSQL {why}, so this name never matches; write it as "
            f"pg_stat_activity shows it ({value[:_NAMEDATALEN]!r} if it is only too long)"
        )
    return values


class SessionFilter(StrictParams):
    """What both actions share: whose sessions, where, and at most how many per run."""

    # The allow-list: only sessions of these roles are ever signalled.
    roles: tuple[str, ...] = Field(min_length=1, max_length=100)
    # Empty: the database the connection is to (the one the alert is about).
    databases: tuple[str, ...] = Field(default=(), max_length=100)
    exclude_applications: tuple[str, ...] = DEFAULT_EXCLUDED_APPLICATIONS
    max_sessions: Integer = Field(default=5, ge=1, le=100)

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_names(value, "role"))

    @field_validator("databases")
    @classmethod
    def _databases(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_names(value, "database"))

    @field_validator("exclude_applications")
    @classmethod
    def _exclude_applications(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_applications(value))

    def where(self) -> str:
        places = ", ".join(self.databases) if self.databases else "the connection's database"
        return f"roles {', '.join(self.roles)} on {places}"


class TerminateIdleParams(SessionFilter):
    """End sessions in one of ``states`` for at least ``idle_for`` (e.g. ``10m``)."""

    idle_for: Duration = Field(ge=1)
    states: tuple[IdleState, ...] = Field(
        default=("idle in transaction", "idle in transaction (aborted)"), min_length=1
    )


class CancelLongQueriesParams(SessionFilter):
    """Cancel statements that have been running for at least ``running_for``."""

    running_for: Duration = Field(ge=1)


@dataclass(frozen=True, slots=True)
class Session:
    """One backend as the statement saw it. ``since``: when it entered its state (idle, and
    a fast-path function call) or started its statement (long queries), an aware datetime;
    ``age_s``: seconds since then."""

    pid: int
    role: str
    database: str
    application: str
    state: str
    since: datetime
    age_s: float
    signalled: bool = False

    def as_dict(self, *, age: bool = True) -> dict[str, Any]:
        """The session as JSON; ``age=False`` for a preview, which must not change by the
        second (module docstring)."""
        shown: dict[str, Any] = {
            "pid": self.pid,
            "role": self.role,
            "database": self.database,
            "application": self.application,
            "state": self.state,
            "since": self.since.isoformat(),
        }
        if age:
            shown["age"] = format_duration(round(self.age_s))
        return shown

    def line(self, *, age: bool = True) -> str:
        """``pid 123 (app@orders, "billing-api", idle in transaction, 12m3s)``, or with
        ``age=False`` ``... idle in transaction, since 2026-11-30T07:00:00.123456+00:00)``; ``-``
        for no application. The application is quoted (a JSON string): any client names its
        own, and one written as ``x, idle, 1s); pid 1 (postgres@orders, psql`` read bare as a
        second session in the preview an approver reads and the record a reviewer reads."""
        app = json.dumps(self.application) if self.application else "-"
        when = format_duration(round(self.age_s)) if age else f"since {self.since.isoformat()}"
        return f"pid {self.pid} ({self.role}@{self.database}, {app}, {self.state}, {when})"


def _approved_pairs(approved: Mapping[str, Any] | None) -> tuple[list[int], list[datetime]] | None:
    """The (pid, since) pairs an approved preview listed (its preconditions, back from the
    store's jsonb), as the statement's two arrays; None when the step was not approved."""
    if approved is None:
        return None
    sessions = approved.get("sessions")
    if not isinstance(sessions, list):
        raise ActionRefused(
            "the approved preview names no sessions (approved before this version?): "
            "not signalling anything; ask for a new approval"
        )
    pids = [int(s["pid"]) for s in sessions]
    since = [datetime.fromisoformat(str(s["since"])) for s in sessions]
    return pids, since


class _SessionAction:
    """The Action protocol for one signalling statement; subclasses give the SQL and words."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    risk: ClassVar[Risk] = Risk.LOW
    disruptive: ClassVar[bool] = True
    target_kinds: ClassVar[frozenset[str]] = frozenset({"PostgresDatabase"})
    # A signal leaves no trace to recognise it by (the session is gone, or its statement), so
    # a second call of the same step would signal up to the cap again: a step taken up after
    # a crash that may have come after the signal is not run again (Action.replay_safe).
    replay_safe: ClassVar[bool] = False
    sql_file: ClassVar[str]
    verb: ClassVar[str]  # "end", "cancel"
    done: ClassVar[str]  # "terminated", "cancelled"

    def __init__(self) -> None:
        self._sql = _sql(self.sql_file)

    def requires(self, target: Target) -> frozenset[str]:
        """``postgres:<name>`` of the database the target names."""
        return frozenset({f"postgres:{target.name}"})

    def describe(self, target: Target, params: BaseModel) -> str:
        return f"{self.explain(self._params(params))} on PostgreSQL {target.name!r}"

    def explain(self, params: Any) -> str:
        raise NotImplementedError

    def arguments(self, params: Any, signal: bool) -> tuple[Any, ...]:
        raise NotImplementedError

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        typed = self._params(params)
        sessions, seen = await self._sessions(ctx, target, typed, signal=False)
        before = {"sessions": [s.as_dict(age=False) for s in sessions]}
        if not sessions:
            # Bound to no session: approved, such a step signals nothing, whatever appears.
            return Change(
                f"no session matches: {self.describe(target, typed)}" + roles_note(seen),
                before,
                before,
                preconditions={"sessions": []},
            )
        return Change(
            f"{self.verb} {len(sessions)} session(s) on {target.name}: "
            + "; ".join(s.line(age=False) for s in sessions),
            before,
            {self.done: [s.pid for s in sessions]},
            preconditions={
                "sessions": [{"pid": s.pid, "since": s.since.isoformat()} for s in sessions]
            },
        )

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        typed = self._params(params)
        if ctx.dry_run:
            change = await self.preview(ctx, target, typed)
            return Result(
                Outcome.DRY_RUN, f"dry run (nothing signalled): {change.summary}", change.before
            )
        sessions, seen = await self._sessions(ctx, target, typed, signal=True)
        before = {"sessions": [s.as_dict() for s in sessions]}
        if not sessions:
            return Result(
                Outcome.NOOP,
                f"no session matches: {self.describe(target, typed)}" + roles_note(seen),
                before,
                before,
            )
        hit = [s for s in sessions if s.signalled]
        missed = [s for s in sessions if not s.signalled]
        after: Mapping[str, Any] = {self.done: [s.pid for s in hit]}
        message = f"{self.done} {len(hit)} session(s) on {target.name}: " + "; ".join(
            s.line() for s in hit
        )
        if missed:
            after = {**after, "not_signalled": [s.pid for s in missed]}
            message += f"; not signalled (gone already): {', '.join(str(s.pid) for s in missed)}"
        return Result(Outcome.OK if hit else Outcome.NOOP, message, before, after)

    async def _sessions(
        self, ctx: ActionContext, target: Target, params: Any, *, signal: bool
    ) -> tuple[list[Session], RolesSeen]:
        """The sessions the statement matched (and signalled, with ``signal``), and the
        allow-listed roles no session of which could match."""
        if target.kind not in self.target_kinds:
            raise ActionRefused(f"{self.name} acts on PostgresDatabase, not {target.kind}")
        conn: PostgresConnection = ctx.clients.get(f"postgres:{target.name}")
        seen = await roles_seen(conn, self.name, params.roles, params.databases)
        pairs = _approved_pairs(ctx.approved) if signal else None
        args = (*self.arguments(params, signal), *(pairs or (None, None)))
        if signal:
            rows = await conn.fetch_once(self.name, self._sql, *args)
        else:
            rows = await conn.fetch(self.name, self._sql, *args)
        found = [
            Session(
                pid=int(row["pid"]),
                role=str(row["role"]),
                database=str(row["database"]),
                application=str(row["application"]),
                state=str(row["state"]),
                since=row["since"],
                age_s=float(row["age_s"]),
                signalled=bool(row["signalled"]),
            )
            for row in rows
        ]
        return found, seen

    def _params(self, params: BaseModel) -> Any:
        if not isinstance(params, self.Params):
            raise ParamsError(self.name, f"expected {self.Params.__name__}, got {type(params)}")
        return params


class TerminateIdle(_SessionAction):
    """End sessions idle (in a transaction, by default) longer than a threshold."""

    name: ClassVar[str] = "postgres.terminate_idle"
    Params: ClassVar[type[BaseModel]] = TerminateIdleParams
    sql_file: ClassVar[str] = "terminate_idle.sql"
    verb: ClassVar[str] = "end"
    done: ClassVar[str] = "terminated"

    def explain(self, params: TerminateIdleParams) -> str:
        return (
            f"end at most {params.max_sessions} session(s) {' or '.join(params.states)} for "
            f"more than {format_duration(params.idle_for)}, of {params.where()}"
        )

    def arguments(self, params: TerminateIdleParams, signal: bool) -> tuple[Any, ...]:
        return (
            list(params.databases),
            list(params.roles),
            list(params.exclude_applications),
            list(params.states),
            params.idle_for,
            params.max_sessions,
            signal,
        )


class CancelLongQueries(_SessionAction):
    """Cancel (not terminate) statements running longer than a threshold: backends in state
    ``active``, and in ``fastpath function call`` (a function called through the fast-path
    interface, libpq's ``PQfn``; PostgreSQL docs, pg_stat_activity ``state``), which
    ``pg_cancel_backend`` cancels the same way. A fast-path call is timed from when it began
    (``state_change``): PostgreSQL reports it without a statement, so its ``query_start`` is
    the previous statement's (``pgstat_report_activity(STATE_FASTPATH, NULL)`` in postgres.c),
    and a call just begun after an old statement would look old."""

    name: ClassVar[str] = "postgres.cancel_long_queries"
    Params: ClassVar[type[BaseModel]] = CancelLongQueriesParams
    sql_file: ClassVar[str] = "cancel_long_queries.sql"
    verb: ClassVar[str] = "cancel the statements of"
    done: ClassVar[str] = "cancelled"

    def explain(self, params: CancelLongQueriesParams) -> str:
        return (
            f"cancel at most {params.max_sessions} statement(s) running for more than "
            f"{format_duration(params.running_for)}, of {params.where()}"
        )

    def arguments(self, params: CancelLongQueriesParams, signal: bool) -> tuple[Any, ...]:
        return (
            list(params.databases),
            list(params.roles),
            list(params.exclude_applications),
            params.running_for,
            params.max_sessions,
            signal,
        )
