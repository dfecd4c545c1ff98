"""The PostgreSQL repository: the durable event queue, runs and steps, and the audit chain.

Everything goes through one asyncpg pool. Connection-level failures (server down, refused,
reset, timeouts) surface as ``StoreUnavailable`` so the HTTP layer can answer 503 and the worker
can back off; every other database error is a bug and propagates unchanged.

Every write that changes a run appends an audit row in the same transaction, so the audit log
and the run table cannot disagree.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from receiver.model import AlertEvent, History, PriorRun, RunOutcome, Status, Target
from receiver.store.migrate import migrate

__all__ = [
    "EVENTS_CHANNEL",
    "AuditCheck",
    "ClaimedEvent",
    "NewEvent",
    "RunRecord",
    "StepRecord",
    "Store",
    "StoreUnavailable",
    "canonical_json",
    "is_unavailable",
]

EVENTS_CHANNEL = "remediator_events"

# Outcomes after which a run is finished (finished_at is set when a run reaches one).
_TERMINAL = frozenset(
    {
        RunOutcome.RESOLVED,
        RunOutcome.SUCCEEDED,
        RunOutcome.DRY_RUN,
        RunOutcome.REFUSED,
        RunOutcome.FAILED,
    }
)


class StoreUnavailable(Exception):
    """PostgreSQL cannot be reached right now; the caller should retry later (HTTP 503)."""


def is_unavailable(exc: BaseException) -> bool:
    """True for failures of the connection, not of the statement."""
    if isinstance(
        exc,
        asyncpg.exceptions.PostgresConnectionError
        | asyncpg.exceptions.CannotConnectNowError
        | asyncpg.exceptions.AdminShutdownError
        | asyncpg.exceptions.CrashShutdownError
        | asyncpg.exceptions.TooManyConnectionsError
        | OSError
        | TimeoutError,
    ):
        return True
    # asyncpg reports use of a connection that died under it as a plain InterfaceError.
    return isinstance(exc, asyncpg.exceptions.InterfaceError) and (
        "closed" in str(exc) or ("connection" in str(exc) and "lost" in str(exc))
    )


@contextlib.contextmanager
def _translate() -> Iterator[None]:
    try:
        yield
    except StoreUnavailable:
        raise
    except Exception as exc:
        if is_unavailable(exc):
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        raise


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the byte form the audit hash is computed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# -- plain records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One alert of an accepted notification, before it has an id."""

    fingerprint: str
    starts_at: str
    status: Status
    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    ends_at: str = "0001-01-01T00:00:00Z"
    generator_url: str = ""
    group_key: str = ""
    receiver: str = ""
    # Set when the event needs no worker (see engine.settled_at_intake): stored already done.
    settled_reason: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.fingerprint, self.starts_at, str(self.status))

    def as_event(self, event_id: int, received_at: datetime | None = None) -> AlertEvent:
        """The event as the store would hand it out once stored under ``event_id``."""
        return AlertEvent(
            id=event_id,
            fingerprint=self.fingerprint,
            starts_at=self.starts_at,
            status=self.status,
            labels=dict(self.labels),
            annotations=dict(self.annotations),
            ends_at=self.ends_at,
            generator_url=self.generator_url,
            group_key=self.group_key,
            receiver=self.receiver,
            received_at=received_at,
        )


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    """An event leased to one worker until ``lease_until``; ``attempts`` counts this claim."""

    event: AlertEvent
    attempts: int
    lease_until: datetime
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class StepRecord:
    run_id: str
    phase: str
    idx: int
    action: str
    params: Mapping[str, Any]
    needs_approval: bool
    outcome: str
    message: str
    before: Mapping[str, Any] | None
    after: Mapping[str, Any] | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class RunRecord:
    id: str
    rule: str
    fingerprint: str
    starts_at: str
    alertname: str
    event_id: int | None
    target: Target
    outcome: RunOutcome
    dry_run: bool
    occurrence: int
    verify_within_s: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    verify_deadline: datetime | None
    resolved_at: datetime | None
    time_to_resolve_s: float | None
    refusal_guard: str | None
    refusal_reason: str | None
    retry_at: datetime | None
    error: str | None
    steps: tuple[StepRecord, ...] = ()

    def as_prior(self) -> PriorRun:
        return PriorRun(
            run_id=self.id,
            rule=self.rule,
            target=self.target,
            fingerprint=self.fingerprint,
            starts_at=self.starts_at,
            created_at=self.created_at,
            outcome=self.outcome,
            closed=self.resolved_at is not None,
        )


@dataclass(frozen=True, slots=True)
class AuditCheck:
    """Result of verifying the audit chain. ``first_bad_id`` is None when ``ok``."""

    ok: bool
    first_bad_id: int | None
    checked: int
    reason: str = ""

    def __iter__(self) -> Any:  # allows `ok, bad = await store.verify_audit()`
        return iter((self.ok, self.first_bad_id))


def _event_from_row(row: Mapping[str, Any]) -> AlertEvent:
    return AlertEvent(
        id=row["id"],
        fingerprint=row["fingerprint"],
        starts_at=row["starts_at"],
        status=Status(row["status"]),
        labels=json.loads(row["labels"]),
        annotations=json.loads(row["annotations"]),
        ends_at=row["ends_at"],
        generator_url=row["generator_url"],
        group_key=row["group_key"],
        receiver=row["receiver"],
        received_at=row["received_at"],
    )


def _json_or_none(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def _step_from_row(row: Mapping[str, Any]) -> StepRecord:
    return StepRecord(
        run_id=str(row["run_id"]),
        phase=row["phase"],
        idx=row["idx"],
        action=row["action"],
        params=json.loads(row["params"]),
        needs_approval=row["needs_approval"],
        outcome=row["outcome"],
        message=row["message"],
        before=_json_or_none(row["before"]),
        after=_json_or_none(row["after"]),
        attempts=row["attempts"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def _run_from_row(row: Mapping[str, Any], steps: Sequence[StepRecord] = ()) -> RunRecord:
    return RunRecord(
        id=str(row["id"]),
        rule=row["rule"],
        fingerprint=row["fingerprint"],
        starts_at=row["starts_at"],
        alertname=row["alertname"],
        event_id=row["event_id"],
        target=Target(row["target_kind"], row["target_namespace"], row["target_name"]),
        outcome=RunOutcome(row["outcome"]),
        dry_run=row["dry_run"],
        occurrence=row["occurrence"],
        verify_within_s=row["verify_within_s"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        verify_deadline=row["verify_deadline"],
        resolved_at=row["resolved_at"],
        time_to_resolve_s=row["time_to_resolve_s"],
        refusal_guard=row["refusal_guard"],
        refusal_reason=row["refusal_reason"],
        retry_at=row["retry_at"],
        error=row["error"],
        steps=tuple(steps),
    )


def _encode_cursor(created_at: datetime, run_id: str) -> str:
    raw = f"{_utc(created_at).isoformat(timespec='microseconds')}|{run_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, run_id = raw.split("|", 1)
        return datetime.fromisoformat(stamp), run_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc


def _audit_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(content)).encode()).hexdigest()


def _audit_content(
    *,
    audit_id: int,
    at: datetime,
    kind: str,
    run_id: str | None,
    fingerprint: str | None,
    data: Any,
) -> dict[str, Any]:
    return {
        "id": audit_id,
        "at": _utc(at).isoformat(timespec="microseconds"),
        "kind": kind,
        "run_id": run_id,
        "fingerprint": fingerprint,
        "data": data,
    }


_RUN_COLUMNS = """
    id, rule, fingerprint, starts_at, alertname, event_id, target_kind, target_namespace,
    target_name, outcome, dry_run, occurrence, verify_within_s, created_at, started_at,
    finished_at, verify_deadline, resolved_at, time_to_resolve_s, refusal_guard, refusal_reason,
    retry_at, error
"""



async def _keep_session(conn: Any) -> None:
    """Pool release hook: nothing to reset.

    asyncpg's default runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on
    every release, a round trip that cost as much as the work itself on the intake and worker
    paths. Pool connections here never keep session state: no SET, no cursors, LISTEN lives on
    the worker's own connection, and the migration lock is released explicitly. asyncpg still
    rolls back a transaction left open before the connection is reused.
    """


CLAIM_WINDOW = 32


def _event_columns(alias: str = "") -> str:
    p = f"{alias}." if alias else ""
    return f"""
    {p}id, {p}fingerprint, {p}starts_at, {p}status, {p}ends_at, {p}labels::text AS labels,
    {p}annotations::text AS annotations, {p}generator_url, {p}group_key, {p}receiver,
    {p}received_at, {p}attempts, {p}lease_until, {p}last_error
"""


class Store:
    """The repository over an asyncpg pool. Create with ``await Store.connect(dsn)``."""

    def __init__(self, pool: Any, dsn: str) -> None:
        self._pool = pool
        self.dsn = dsn

    # -- lifecycle ----------------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        connect_timeout_s: float = 5.0,
        command_timeout_s: float | None = 30.0,
        run_migrations: bool = True,
    ) -> Store:
        """Open the pool and bring the schema up to date. StoreUnavailable if unreachable."""
        with _translate():
            pool = await asyncpg.create_pool(
                dsn,
                min_size=min_size,
                max_size=max_size,
                timeout=connect_timeout_s,
                command_timeout=command_timeout_s,
                reset=_keep_session,
            )
        store = cls(pool, dsn)
        if run_migrations:
            try:
                with _translate():
                    async with pool.acquire() as conn:
                        await migrate(conn)
            except BaseException:
                await pool.close()
                raise
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def ping(self) -> None:
        """Round-trip to the server; raises StoreUnavailable when it does not answer."""
        with _translate():
            await self._pool.fetchval("SELECT 1")

    @contextlib.asynccontextmanager
    async def _tx(self, **options: Any) -> AsyncIterator[Any]:
        """A connection in a transaction, with connection failures as StoreUnavailable."""
        with _translate():
            async with self._pool.acquire() as conn, conn.transaction(**options):
                yield conn

    # -- intake -------------------------------------------------------------------------

    async def insert_events(self, events: Sequence[NewEvent]) -> tuple[int, int]:
        """Store the events of one notification: (accepted, duplicates), after COMMIT."""
        [counts] = await self.insert_event_groups([events])
        return counts

    async def insert_event_groups(
        self, groups: Sequence[Sequence[NewEvent]]
    ) -> list[tuple[int, int]]:
        """Store several notifications in ONE transaction; (accepted, duplicates) per group.

        Dedupe is ``INSERT .. ON CONFLICT DO NOTHING`` on (fingerprint, starts_at, status).
        When the same key appears more than once in the batch, the first occurrence (in group
        order) is the accepted one and the others count as duplicates. An event with a
        ``settled_reason`` is stored already done, so no worker ever claims it. Wakes the workers
        with NOTIFY (PostgreSQL delivers it at commit) when anything was queued for them.
        """
        flat = [event for group in groups for event in group]
        if not flat:
            return [(0, 0) for _ in groups]
        # One statement, so one round trip: it is its own transaction (committed before the
        # answer comes back), and the NOTIFY inside it is delivered at that commit.
        with _translate():
            rows = await self._pool.fetch(
                """
                WITH stored AS (
                    INSERT INTO alert_events (
                        fingerprint, starts_at, status, ends_at, labels, annotations,
                        generator_url, alertname, group_key, receiver,
                        state, done_at, settled_reason)
                    SELECT f, s, st, e, l::jsonb, a::jsonb, g, n, gk, r,
                           CASE WHEN sr IS NULL THEN 'pending' ELSE 'done' END,
                           CASE WHEN sr IS NULL THEN NULL ELSE now() END, sr
                    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                                $11::text[])
                         AS t(f, s, st, e, l, a, g, n, gk, r, sr)
                    -- One key order for every writer: concurrent batches cannot deadlock.
                    ORDER BY f, s, st
                    ON CONFLICT ON CONSTRAINT alert_events_dedupe DO NOTHING
                    RETURNING fingerprint, starts_at, status, state
                ), woken AS (
                    -- Wake the workers only when something was queued for them.
                    SELECT pg_notify($12, '')
                    FROM (SELECT 1 FROM stored WHERE state = 'pending' LIMIT 1) AS queued
                )
                SELECT fingerprint, starts_at, status, (SELECT count(*) FROM woken) AS woken
                FROM stored
                """,
                [e.fingerprint for e in flat],
                [e.starts_at for e in flat],
                [str(e.status) for e in flat],
                [e.ends_at for e in flat],
                # jsonb orders keys itself: no need to sort them here, on the hot path.
                [_compact_json(dict(e.labels)) for e in flat],
                [_compact_json(dict(e.annotations)) for e in flat],
                [e.generator_url for e in flat],
                [e.labels.get("alertname", "") for e in flat],
                [e.group_key for e in flat],
                [e.receiver for e in flat],
                [e.settled_reason for e in flat],
                EVENTS_CHANNEL,
            )
        inserted = {(r["fingerprint"], r["starts_at"], r["status"]) for r in rows}
        results: list[tuple[int, int]] = []
        for group in groups:
            accepted = 0
            for event in group:
                if event.key in inserted:
                    inserted.discard(event.key)  # later copies of this key are duplicates
                    accepted += 1
            results.append((accepted, len(group) - accepted))
        return results

    # -- the event queue ----------------------------------------------------------------

    async def claim_events(self, owner: str, limit: int, lease_s: float) -> list[ClaimedEvent]:
        """Lease up to ``limit`` due events to ``owner`` for ``lease_s`` seconds.

        Due: pending with ``not_before <= now()``, or claimed with an expired lease (its worker
        died). SKIP LOCKED lets replicas claim side by side without waiting on each other. An
        event is only claimable once every older event of the same fingerprint is done, so the
        firing and the resolved event of one alert are never processed concurrently or out of
        order; that condition reads only committed "done" states, so it holds across replicas.
        """
        if limit <= 0:
            return []
        async with self._tx() as conn:
            # Pin the plan: walk the claim indexes in order and stop at the window. Right after
            # a burst the statistics are stale and the planner would rather bitmap-scan and sort
            # the whole backlog (20-170 ms per claim at 6000 due events instead of < 1 ms).
            # SET LOCAL ends with this transaction; pooled connections keep no session state.
            await conn.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
            rows = await conn.fetch(
                f"""
                WITH candidates AS (
                    -- A bounded walk from the head of each claim index, so a claim costs the
                    -- same whatever the history or the backlog holds. Only the oldest unfinished
                    -- event of each alert is taken, and the others are skipped during the walk,
                    -- not after it: otherwise enough of them could fill the window and hide the
                    -- older event that unblocks them. (A scalar subquery, not NOT EXISTS, so it
                    -- stays a filter on the ordered walk instead of becoming a join over all.)
                    (SELECT e.id FROM alert_events e
                     WHERE e.state = 'pending' AND e.not_before <= now()
                       AND e.id = (SELECT min(older.id) FROM alert_events older
                                   WHERE older.fingerprint = e.fingerprint
                                     AND older.state <> 'done')
                     ORDER BY e.not_before, e.id LIMIT $4)
                    UNION ALL
                    (SELECT e.id FROM alert_events e
                     WHERE e.state = 'claimed' AND e.lease_until < now()
                       AND e.id = (SELECT min(older.id) FROM alert_events older
                                   WHERE older.fingerprint = e.fingerprint
                                     AND older.state <> 'done')
                     ORDER BY e.lease_until LIMIT $4)
                ), picked AS (
                    SELECT e.id FROM alert_events e
                    WHERE e.id IN (SELECT id FROM candidates)
                      -- Re-checked on the locked row: another worker may have claimed it since.
                      AND ((e.state = 'pending' AND e.not_before <= now())
                           OR (e.state = 'claimed' AND e.lease_until < now()))
                    ORDER BY e.id
                    LIMIT $2
                    FOR UPDATE OF e SKIP LOCKED
                )
                UPDATE alert_events e
                SET state = 'claimed', lease_owner = $1, attempts = e.attempts + 1,
                    lease_until = now() + make_interval(secs => $3)
                FROM picked WHERE e.id = picked.id
                RETURNING {_event_columns("e")}
                """,
                owner,
                limit,
                float(lease_s),
                # Room for rows other workers are locking at the same moment (SKIP LOCKED).
                limit * 4 + CLAIM_WINDOW,
            )
        rows = sorted(rows, key=lambda r: r["id"])
        return [
            ClaimedEvent(
                event=_event_from_row(r),
                attempts=r["attempts"],
                lease_until=r["lease_until"],
                last_error=r["last_error"],
            )
            for r in rows
        ]

    async def extend_lease(self, event_id: int, owner: str, lease_s: float) -> bool:
        """Push the lease forward; False when ``owner`` no longer holds it."""
        with _translate():
            row = await self._pool.fetchrow(
                """
                UPDATE alert_events SET lease_until = now() + make_interval(secs => $3)
                WHERE id = $1 AND state = 'claimed' AND lease_owner = $2
                RETURNING id
                """,
                event_id,
                owner,
                float(lease_s),
            )
        return row is not None

    async def complete_event(self, event_id: int, owner: str) -> bool:
        """Mark a claimed event done; False when ``owner`` lost the lease meanwhile."""
        with _translate():
            row = await self._pool.fetchrow(
                """
                UPDATE alert_events
                SET state = 'done', done_at = now(), lease_owner = NULL, lease_until = NULL
                WHERE id = $1 AND state = 'claimed' AND lease_owner = $2
                RETURNING id
                """,
                event_id,
                owner,
            )
        return row is not None

    async def release_event(
        self, event_id: int, owner: str, delay_s: float = 0.0, error: str | None = None
    ) -> bool:
        """Back to pending, due after ``delay_s``; only while ``owner`` still holds the lease."""
        with _translate():
            row = await self._pool.fetchrow(
                """
                UPDATE alert_events
                SET state = 'pending', lease_owner = NULL, lease_until = NULL,
                    not_before = now() + make_interval(secs => $3),
                    last_error = coalesce($4, last_error)
                WHERE id = $1 AND state = 'claimed' AND lease_owner = $2
                RETURNING id
                """,
                event_id,
                owner,
                max(0.0, float(delay_s)),
                error,
            )
        return row is not None

    async def queue_depth(self) -> int:
        """Events not yet done (pending or claimed)."""
        with _translate():
            value: int = await self._pool.fetchval(
                "SELECT count(*) FROM alert_events WHERE state <> 'done'"
            )
        return value

    async def get_event(self, event_id: int) -> dict[str, Any] | None:
        """One event with its queue state, for review and tests."""
        with _translate():
            row = await self._pool.fetchrow(
                f"""SELECT {_event_columns()}, state, lease_owner, not_before, done_at,
                           settled_reason
                    FROM alert_events WHERE id = $1""",
                event_id,
            )
        return None if row is None else dict(row)

    async def prune_events(self, older_than_s: float) -> int:
        """Retention: delete finished events older than the given age. Never touches audit."""
        with _translate():
            status: str = await self._pool.execute(
                """DELETE FROM alert_events
                   WHERE state = 'done' AND done_at < now() - make_interval(secs => $1)""",
                float(older_than_s),
            )
        return int(status.split()[-1])

    # -- history for the engine ---------------------------------------------------------

    async def history(
        self,
        event: AlertEvent,
        within_s: float,
        *,
        repeats: Collection[tuple[str, Target]] = (),
        limit: int = 1000,
    ) -> History:
        """What the engine may know about the past of ``event``.

        ``episode_runs``: every run of the same (fingerprint, starts_at). ``recent_runs``: runs
        created in the last ``within_s`` seconds of exactly the (rule, target) pairs in
        ``repeats`` (``engine.repeat_keys``), newest ``limit``. ``episode_resolved``: a resolved
        event of this episode is stored (a later firing duplicate must be ignored).
        """
        # No transaction: under READ COMMITTED it would not give the reads one snapshot, only
        # two more round trips per event. Each read is consistent on its own, and the worker
        # processes one fingerprint's events strictly in order.
        with _translate():
            async with self._pool.acquire() as conn:
                episode = await conn.fetch(
                    f"""SELECT {_RUN_COLUMNS} FROM runs
                        WHERE fingerprint = $1 AND starts_at = $2 ORDER BY created_at, id""",
                    event.fingerprint,
                    event.starts_at,
                )
                recent = []
                if repeats:
                    recent = await conn.fetch(
                        f"""SELECT {_RUN_COLUMNS} FROM runs
                            WHERE (target_kind, target_namespace, target_name, rule) IN (
                                    SELECT * FROM unnest($2::text[], $3::text[], $4::text[],
                                                         $5::text[]))
                              AND created_at >= now() - make_interval(secs => $1)
                            ORDER BY created_at DESC, id DESC LIMIT $6""",
                        float(within_s),
                        [t.kind for _, t in repeats],
                        [t.namespace for _, t in repeats],
                        [t.name for _, t in repeats],
                        [rule for rule, _ in repeats],
                        limit,
                    )
                resolved = await conn.fetchval(
                    """SELECT EXISTS (SELECT 1 FROM alert_events
                       WHERE fingerprint = $1 AND starts_at = $2 AND status = 'resolved')""",
                    event.fingerprint,
                    event.starts_at,
                )
        return History(
            episode_runs=tuple(_run_from_row(r).as_prior() for r in episode),
            recent_runs=tuple(_run_from_row(r).as_prior() for r in reversed(recent)),
            episode_resolved=bool(resolved),
        )

    # -- runs ---------------------------------------------------------------------------

    async def create_run(
        self,
        *,
        rule: str,
        event: AlertEvent,
        target: Target,
        dry_run: bool,
        occurrence: int = 1,
        verify_within_s: float | None = None,
        outcome: RunOutcome = RunOutcome.PENDING,
        data: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Create the run of (rule, episode); None when it already exists (a duplicate)."""
        async with self._tx() as conn:
            run_id = await conn.fetchval(
                """
                INSERT INTO runs (rule, fingerprint, starts_at, alertname, event_id, target_kind,
                                  target_namespace, target_name, outcome, dry_run, occurrence,
                                  verify_within_s)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                ON CONFLICT ON CONSTRAINT runs_once_per_episode DO NOTHING
                RETURNING id::text
                """,
                rule,
                event.fingerprint,
                event.starts_at,
                event.alertname,
                event.id,
                target.kind,
                target.namespace,
                target.name,
                str(outcome),
                dry_run,
                occurrence,
                verify_within_s,
            )
            if run_id is None:
                return None
            await self._audit(
                conn,
                "run.created",
                run_id,
                event.fingerprint,
                {
                    "rule": rule,
                    "starts_at": event.starts_at,
                    "event_id": event.id,
                    "target": target.as_dict(),
                    "outcome": str(outcome),
                    "dry_run": dry_run,
                    "occurrence": occurrence,
                    **(dict(data) if data else {}),
                },
            )
        result: str = run_id
        return result

    async def get_run(self, run_id: str, *, with_steps: bool = True) -> RunRecord | None:
        with _translate():
            async with self._pool.acquire() as conn:
                try:
                    row = await conn.fetchrow(
                        f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = $1::uuid", run_id
                    )
                except asyncpg.exceptions.DataError:
                    return None  # not a uuid: no such run
                if row is None:
                    return None
                steps: list[StepRecord] = []
                if with_steps:
                    steps = [
                        _step_from_row(s)
                        for s in await conn.fetch(
                            """SELECT run_id, phase, idx, action, params::text AS params,
                                      needs_approval, outcome, message, before::text AS before,
                                      after::text AS after, attempts, started_at, finished_at
                               FROM steps WHERE run_id = $1::uuid
                               ORDER BY phase = 'resolve', idx""",
                            run_id,
                        )
                    ]
        return _run_from_row(row, steps)

    async def set_run_outcome(
        self,
        run_id: str,
        outcome: RunOutcome,
        *,
        error: str | None = None,
        verify_within_s: float | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> bool:
        """Move a run to ``outcome``; keeps the timestamps that follow from it.

        RUNNING stamps started_at (once); a terminal outcome stamps finished_at; VERIFYING sets
        verify_deadline = now() + (verify_within_s or the run's own verify_within_s).
        Returns False when the run does not exist.
        """
        terminal = outcome in _TERMINAL
        async with self._tx() as conn:
            row = await conn.fetchrow(
                """
                UPDATE runs SET
                    outcome = $2,
                    started_at = CASE WHEN $2 = 'running' THEN coalesce(started_at, now())
                                      ELSE started_at END,
                    finished_at = CASE WHEN $3 THEN coalesce(finished_at, now())
                                       ELSE finished_at END,
                    verify_deadline = CASE
                        WHEN $2 = 'verifying' AND coalesce($5, verify_within_s) IS NOT NULL
                        THEN now() + make_interval(secs => coalesce($5, verify_within_s))
                        ELSE verify_deadline END,
                    error = coalesce($4, error)
                WHERE id = $1::uuid
                RETURNING fingerprint, verify_deadline
                """,
                run_id,
                str(outcome),
                terminal,
                error,
                verify_within_s,
            )
            if row is None:
                return False
            payload: dict[str, Any] = {"outcome": str(outcome)}
            if error is not None:
                payload["error"] = error
            if row["verify_deadline"] is not None and outcome is RunOutcome.VERIFYING:
                payload["verify_deadline"] = _utc(row["verify_deadline"]).isoformat()
            if data:
                payload.update(data)
            await self._audit(conn, "run.outcome", run_id, row["fingerprint"], payload)
        return True

    async def record_step(
        self,
        run_id: str,
        *,
        idx: int,
        action: str,
        outcome: str,
        phase: str = "run",
        params: Mapping[str, Any] | None = None,
        needs_approval: bool = False,
        message: str = "",
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
        attempts: int = 0,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Insert or update step ``idx`` of ``phase`` ('run' or 'resolve') of a run.

        On update, ``params``/``before``/``after`` left as None keep what was recorded, and
        started_at keeps its first value.
        """
        async with self._tx() as conn:
            fingerprint = await conn.fetchval(
                """
                WITH up AS (
                    INSERT INTO steps (run_id, phase, idx, action, params, needs_approval,
                                       outcome, message, before, after, attempts, started_at,
                                       finished_at)
                    VALUES ($1::uuid, $2, $3, $4, coalesce($5::jsonb, '{}'::jsonb), $6, $7, $8,
                            $9::jsonb, $10::jsonb, $11, $12, $13)
                    ON CONFLICT (run_id, phase, idx) DO UPDATE SET
                        action = EXCLUDED.action, params = coalesce($5::jsonb, steps.params),
                        needs_approval = EXCLUDED.needs_approval, outcome = EXCLUDED.outcome,
                        message = EXCLUDED.message,
                        before = coalesce(EXCLUDED.before, steps.before),
                        after = coalesce(EXCLUDED.after, steps.after),
                        attempts = greatest(EXCLUDED.attempts, steps.attempts),
                        started_at = coalesce(steps.started_at, EXCLUDED.started_at),
                        finished_at = coalesce(EXCLUDED.finished_at, steps.finished_at)
                    RETURNING run_id
                )
                SELECT runs.fingerprint FROM up JOIN runs ON runs.id = up.run_id
                """,
                run_id,
                phase,
                idx,
                action,
                None if params is None else canonical_json(dict(params)),
                needs_approval,
                outcome,
                message,
                None if before is None else canonical_json(dict(before)),
                None if after is None else canonical_json(dict(after)),
                attempts,
                started_at,
                finished_at,
            )
            await self._audit(
                conn,
                "step",
                run_id,
                fingerprint,
                {
                    "phase": phase,
                    "idx": idx,
                    "action": action,
                    "outcome": outcome,
                    "message": message,
                    "params": dict(params or {}),
                    "before": None if before is None else dict(before),
                    "after": None if after is None else dict(after),
                },
            )

    async def record_refusal(
        self, run_id: str, guard: str, reason: str, retry_at: datetime | None
    ) -> bool:
        """A guard said no: the run is REFUSED, with the guard's name and when it may pass."""
        async with self._tx() as conn:
            fingerprint = await conn.fetchval(
                """
                UPDATE runs SET outcome = 'refused', refusal_guard = $2, refusal_reason = $3,
                                retry_at = $4, finished_at = coalesce(finished_at, now())
                WHERE id = $1::uuid RETURNING fingerprint
                """,
                run_id,
                guard,
                reason,
                retry_at,
            )
            if fingerprint is None:
                return False
            await self._audit(
                conn,
                "run.refused",
                run_id,
                fingerprint,
                {
                    "guard": guard,
                    "reason": reason,
                    "retry_at": None if retry_at is None else _utc(retry_at).isoformat(),
                },
            )
        return True

    async def close_run(self, run_id: str, resolved_at: datetime) -> bool:
        """The alert resolved: stamp resolved_at and time to resolve (from the run's creation).

        A VERIFYING run becomes RESOLVED; other outcomes are kept. Idempotent: False when the
        run does not exist or was already closed.
        """
        async with self._tx() as conn:
            row = await conn.fetchrow(
                """
                UPDATE runs SET
                    resolved_at = $2,
                    time_to_resolve_s = greatest(0, extract(epoch FROM ($2 - created_at))),
                    outcome = CASE WHEN outcome = 'verifying' THEN 'resolved' ELSE outcome END,
                    finished_at = CASE WHEN outcome = 'verifying' THEN coalesce(finished_at, now())
                                       ELSE finished_at END
                WHERE id = $1::uuid AND resolved_at IS NULL
                RETURNING fingerprint, outcome, time_to_resolve_s
                """,
                run_id,
                resolved_at,
            )
            if row is None:
                return False
            await self._audit(
                conn,
                "run.closed",
                run_id,
                row["fingerprint"],
                {
                    "resolved_at": _utc(resolved_at).isoformat(),
                    "outcome": row["outcome"],
                    "time_to_resolve_s": row["time_to_resolve_s"],
                },
            )
        return True

    async def expire_verifications(self, now: datetime | None = None) -> list[str]:
        """VERIFYING runs past their deadline become FAILED; returns their ids.

        Safe to run in every replica at once: SKIP LOCKED hands each run to one of them.
        """
        async with self._tx() as conn:
            rows = await conn.fetch(
                """
                WITH due AS (
                    SELECT id FROM runs
                    WHERE outcome = 'verifying' AND verify_deadline <= coalesce($1, now())
                    ORDER BY verify_deadline
                    FOR UPDATE SKIP LOCKED
                )
                UPDATE runs SET outcome = 'failed', finished_at = coalesce(finished_at, now()),
                                error = 'alert did not resolve before the verify deadline'
                FROM due WHERE runs.id = due.id
                RETURNING runs.id::text AS id, runs.fingerprint, runs.verify_deadline
                """,
                now,
            )
            for row in rows:
                await self._audit(
                    conn,
                    "run.verify_expired",
                    row["id"],
                    row["fingerprint"],
                    {"verify_deadline": _utc(row["verify_deadline"]).isoformat()},
                )
        return [row["id"] for row in rows]

    async def list_runs(
        self,
        *,
        alertname: str | None = None,
        rule: str | None = None,
        target: Target | str | None = None,
        outcome: RunOutcome | str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[RunRecord], str | None]:
        """Runs, newest first, keyset-paginated on (created_at, id).

        ``target`` is a Target or its key ``kind/namespace/name``. ``cursor`` is the opaque
        value returned with the previous page; ValueError when it is malformed. The second item
        is the next page's cursor, None on the last page.
        """
        clauses: list[str] = []
        args: list[Any] = []

        def arg(value: Any) -> str:
            args.append(value)
            return f"${len(args)}"

        if alertname is not None:
            clauses.append(f"alertname = {arg(alertname)}")
        if rule is not None:
            clauses.append(f"rule = {arg(rule)}")
        if target is not None:
            key = target.key if isinstance(target, Target) else target
            parts = key.split("/", 2)
            if len(parts) != 3:
                raise ValueError("target must be kind/namespace/name")
            clauses.append(
                f"target_kind = {arg(parts[0])} AND target_namespace = {arg(parts[1])}"
                f" AND target_name = {arg(parts[2])}"
            )
        if outcome is not None:
            clauses.append(f"outcome = {arg(str(RunOutcome(outcome)))}")
        if since is not None:
            clauses.append(f"created_at >= {arg(since)}")
        if cursor is not None:
            created_at, last_id = _decode_cursor(cursor)
            clauses.append(f"(created_at, id) < ({arg(created_at)}, {arg(last_id)}::uuid)")
        where = " AND ".join(clauses) or "true"
        limit = max(1, min(limit, 1000))
        sql = (
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE {where}"
            f" ORDER BY created_at DESC, id DESC LIMIT {arg(limit + 1)}"
        )
        with _translate():
            rows = await self._pool.fetch(sql, *args)
        runs = [_run_from_row(r) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = runs[-1]
            next_cursor = _encode_cursor(last.created_at, last.id)
        return runs, next_cursor

    # -- audit --------------------------------------------------------------------------

    async def append_audit(
        self,
        kind: str,
        run_id: str | None = None,
        fingerprint: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one audit row in its own transaction; returns its id."""
        async with self._tx() as conn:
            return await self._audit(conn, kind, run_id, fingerprint, data or {})

    async def _audit(
        self,
        conn: Any,
        kind: str,
        run_id: str | None,
        fingerprint: str | None,
        data: Mapping[str, Any],
    ) -> int:
        # The audit_head row lock serialises appenders, so ids and the chain grow together.
        head = await conn.fetchrow(
            """SELECT last_hash, nextval('audit_log_id_seq') AS id, clock_timestamp() AS at
               FROM audit_head FOR UPDATE"""
        )
        # Round-trip through JSON first: the hash must be over what jsonb will give back.
        normalised = json.loads(canonical_json(dict(data)))
        content = _audit_content(
            audit_id=head["id"],
            at=head["at"],
            kind=kind,
            run_id=run_id,
            fingerprint=fingerprint,
            data=normalised,
        )
        digest = _audit_hash(head["last_hash"], content)
        await conn.execute(
            """
            WITH ins AS (
                INSERT INTO audit_log (id, at, kind, run_id, fingerprint, data, prev_hash, hash)
                VALUES ($1, $2, $3, $4::uuid, $5, $6::jsonb, $7, $8)
                RETURNING id, hash
            )
            UPDATE audit_head SET last_id = ins.id, last_hash = ins.hash FROM ins
            """,
            head["id"],
            head["at"],
            kind,
            run_id,
            fingerprint,
            canonical_json(normalised),
            head["last_hash"],
            digest,
        )
        audit_id: int = head["id"]
        return audit_id

    async def audit_entries(self, run_id: str) -> list[dict[str, Any]]:
        """The audit rows of one run, oldest first (for the timeline)."""
        with _translate():
            rows = await self._pool.fetch(
                """SELECT id, at, kind, run_id::text AS run_id, fingerprint, data::text AS data
                   FROM audit_log WHERE run_id = $1::uuid ORDER BY id""",
                run_id,
            )
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    async def verify_audit(self, *, batch: int = 1000) -> AuditCheck:
        """Recompute the chain; the first row whose hash or link does not match is reported.

        Also checks that the chain ends where audit_head says it does, which catches rows
        removed from the end.
        """
        prev_hash = ""
        checked = 0
        last_id = 0
        # One snapshot for the head and the rows: appenders change both in one transaction.
        async with self._tx(isolation="repeatable_read", readonly=True) as conn:
            head = await conn.fetchrow("SELECT last_id, last_hash FROM audit_head")
            while True:
                rows = await conn.fetch(
                    """SELECT id, at, kind, run_id::text AS run_id, fingerprint,
                              data::text AS data, prev_hash, hash
                       FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2""",
                    last_id,
                    batch,
                )
                if not rows:
                    break
                for row in rows:
                    checked += 1
                    if row["prev_hash"] != prev_hash:
                        return AuditCheck(False, row["id"], checked, "broken link to previous")
                    content = _audit_content(
                        audit_id=row["id"],
                        at=row["at"],
                        kind=row["kind"],
                        run_id=row["run_id"],
                        fingerprint=row["fingerprint"],
                        data=json.loads(row["data"]),
                    )
                    if _audit_hash(prev_hash, content) != row["hash"]:
                        return AuditCheck(False, row["id"], checked, "content does not match hash")
                    prev_hash = row["hash"]
                    last_id = row["id"]
        if head is not None and (head["last_hash"] != prev_hash):
            return AuditCheck(False, head["last_id"], checked, "rows missing at the end")
        return AuditCheck(True, None, checked)

    # -- helpers for tests and operations ----------------------------------------------

    async def server_now(self) -> datetime:
        """The database clock, which leases and deadlines are measured against."""
        with _translate():
            value: datetime = await self._pool.fetchval("SELECT now()")
        return value
