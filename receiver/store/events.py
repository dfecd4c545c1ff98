"""The durable intake queue: alert events from insert to claim, lease, completion and pruning.

Intake stores each notification's alerts here (deduplicated on fingerprint, starts_at, status
and ``refire``, the occurrence of the episode) and wakes the workers with NOTIFY on
``WORK_CHANNEL``; workers lease due events with SKIP LOCKED, one alert's events strictly in
order, and settle each claim as done or retry later. A lease that runs out (its worker died)
makes the event claimable again: at-least-once.

The occurrence of an event (``refire``) and whether it needs a worker at all are worked out in
the insert statement, by the fragments of ``receiver.store.occurrences``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from receiver.alertmanager import LATE_DELIVERY_WINDOW_S
from receiver.model import Skip
from receiver.store.audit import append_in_tx
from receiver.store.bounded import HeldConnection
from receiver.store.canonical import canonical_json
from receiver.store.claims import (
    CLAIM_EVENTS_CALL,
    LANES,
    MAX_HINTED_LANES,
    ClaimedEvents,
    claimed_events,
)
from receiver.store.database import WORK_CHANNEL
from receiver.store.errors import translate
from receiver.store.event_rows import event_json
from receiver.store.failures import Failures
from receiver.store.label_clashes import ClashReport
from receiver.store.leases import EVENTS, EventLeases
from receiver.store.occurrences import REFIRE_SQL, SETTLED_LATERAL
from receiver.store.records import NewEvent, event_columns
from receiver.store.stored_json import stored_data

__all__ = ["CLAIM_WINDOW", "INSERT_TIMEOUT_S", "LATE_DELIVERY_WINDOW_S", "EventQueue"]

CLAIM_WINDOW = 32
# How long an insert may wait for PostgreSQL (seconds), unless the caller says otherwise
# (intake passes its configured intake.timeout).
INSERT_TIMEOUT_S = 5.0


# The most characters of JSON one insert statement sends. A jsonb value holds at most 255 MB
# (PostgreSQL's limit, not a setting); one character is at most 4 bytes of UTF-8, and jsonb's
# own overhead on small values keeps a document of this many characters well under it.
_DOCUMENT_CHARS = 32 * 1024 * 1024


def _event_json(event: NewEvent) -> tuple[object, ...]:
    """One event as ``_insert_document`` reads it (the alertname it takes from the labels)."""
    return (
        event.fingerprint,
        event.starts_at,
        str(event.status),
        event.ends_at,
        event.labels,
        event.annotations,
        event.generator_url,
        event.settled_reason,
    )


def _runs(events: Sequence[NewEvent]) -> list[tuple[object, ...]]:
    """Events as ``_insert_document`` reads them: (groupKey, receiver, [event, ...]) for each
    run of events that share them (a notification's events all do: one run)."""
    runs: list[tuple[object, ...]] = []
    current: list[tuple[object, ...]] = []
    key: tuple[str, str] | None = None
    for event in events:
        if key is None or event.group_key != key[0] or event.receiver != key[1]:
            key = (event.group_key, event.receiver)
            current = []
            runs.append((event.group_key, event.receiver, current))
        current.append(_event_json(event))
    return runs


def _documents(groups: Sequence[Sequence[NewEvent]]) -> Iterator[str]:
    """The batch as JSON documents of at most ``_DOCUMENT_CHARS`` characters each (unless one
    event alone is longer), the events in order: whole notifications where they fit, and a
    notification too large for one document split between several."""
    parts: list[str] = []
    size = 0
    for group in groups:
        pieces = [event_json(run) for run in _runs(group)]
        if sum(len(piece) for piece in pieces) > _DOCUMENT_CHARS:
            pieces = [event_json(run) for event in group for run in _runs([event])]
        for piece in pieces:
            if parts and size + len(piece) + 1 > _DOCUMENT_CHARS:
                yield "[" + ",".join(parts) + "]"
                parts, size = [], 0
            parts.append(piece)
            size += len(piece) + 1
    if parts:
        yield "[" + ",".join(parts) + "]"


class EventQueue(EventLeases, Failures):
    """Alert events: intake inserts them, workers claim, extend, complete or release them.

    ``late_delivery_window_s`` (seconds) is the window of the occurrence rule (module
    docstring); the service sets it from its configuration."""

    late_delivery_window_s: float = LATE_DELIVERY_WINDOW_S
    # Says what was dropped as a duplicate with labels of its own (label_clashes.py): the
    # service's counts in its metrics; without one, the first such drop makes one that logs.
    label_clashes: ClashReport | None = None

    # -- intake -------------------------------------------------------------------------

    async def insert_events(
        self, events: Sequence[NewEvent], *, timeout_s: float = INSERT_TIMEOUT_S
    ) -> tuple[int, int]:
        """Store the events of one notification: (accepted, duplicates), after COMMIT."""
        [counts] = await self.insert_event_groups([events], timeout_s=timeout_s)
        return counts

    async def insert_event_groups(
        self,
        groups: Sequence[Sequence[NewEvent]],
        *,
        timeout_s: float = INSERT_TIMEOUT_S,
        held: HeldConnection | None = None,
    ) -> list[tuple[int, int]]:
        """Store several notifications in ONE transaction; (accepted, duplicates) per group.

        StoreUnavailable when PostgreSQL does not answer within ``timeout_s`` seconds (waiting
        for a connection included); the statement may still commit then, which a retry finds
        as duplicates.

        Dedupe is ``INSERT .. ON CONFLICT DO NOTHING`` on (fingerprint, starts_at, status,
        refire), where ``refire`` (which occurrence of the episode the event belongs to) is
        worked out in the same statement from what is already stored for (fingerprint,
        starts_at): the module docstring states the rule. When the same key appears more than
        once in the batch, the first copy (in group order) is the accepted one and the others
        count as duplicates; a batch that had any is checked for duplicates whose labels differ
        from the copy kept (``receiver.store.label_clashes``). An event with a
        ``settled_reason`` is stored already done, so no worker ever claims it. Wakes the
        workers with NOTIFY (PostgreSQL delivers it at commit) when anything was queued for
        them.

        The batch goes to PostgreSQL as one JSON document. A batch larger than one jsonb value
        may hold (255 MB; ``_DOCUMENT_CHARS``) is written as several statements in the one
        transaction, notifications in order, each seeing what the ones before it stored (as
        if they had come one after another).

        ``held``: the writer's kept connection (``Database.held_connection``) to write on,
        instead of one taken from the pool for this call.
        """
        if not any(groups):
            return [(0, 0) for _ in groups]
        # Each notification's groupKey and receiver once, not once an alert: a long groupKey
        # repeated for each of many alerts outgrew what one jsonb value can hold.
        document = event_json([run for group in groups for run in _runs(group)])
        connection = self._within(timeout_s) if held is None else held.within(timeout_s)
        async with connection as conn:
            if len(document) <= _DOCUMENT_CHARS:
                # One statement, so one round trip: it is its own transaction (committed
                # before the answer comes back), and the NOTIFY inside it is delivered at
                # that commit.
                rows = await self._insert_document(conn, document)
            else:
                rows = []
                async with conn.transaction():
                    for part in _documents(groups):
                        rows.extend(await self._insert_document(conn, part))
            # Within one batch every copy of (fingerprint, starts_at, status) is given the
            # same refire (each is keyed against what was stored before the statement), so at
            # most one of them is inserted and this key identifies it.
            inserted = {(r["fingerprint"], r["starts_at"], r["status"]) for r in rows}
            duplicates: list[list[NewEvent]] = []
            for group in groups:
                duplicates.append([])
                for event in group:
                    if event.key in inserted:
                        inserted.discard(event.key)  # later copies of this key are duplicates
                    else:
                        duplicates[-1].append(event)
            if any(duplicates):
                # A duplicate whose labels differ from the copy kept is dropped all the same
                # (the key is what makes retries harmless), but not without a word: one more
                # statement, only for a batch that had duplicates, after the commit; it never
                # fails intake (label_clashes.py).
                if self.label_clashes is None:
                    self.label_clashes = ClashReport()
                await self.label_clashes.check(conn, duplicates)
        return [(len(g) - len(d), len(d)) for g, d in zip(groups, duplicates, strict=True)]

    async def _insert_document(self, conn: Any, document: str) -> list[Any]:
        """Insert the events of ``document`` (a JSON array of ``_runs``) in one statement; the
        rows it inserted."""
        rows: list[Any] = await conn.fetch(
            f"""
            WITH input AS (
                SELECT j->>0 AS f, j->>1 AS s, j->>2 AS st, j->>3 AS e, j->4 AS l,
                       j->5 AS a, j->>6 AS g, coalesce(j->4->>'alertname', '') AS n,
                       grp->>0 AS gk, grp->>1 AS r, settled.sr, doc.gi, doc_group.ji
                FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS doc(grp, gi),
                     jsonb_array_elements(grp->2) WITH ORDINALITY AS doc_group(j, ji),
                     {SETTLED_LATERAL}
            ), keyed AS (
                SELECT input.*, {REFIRE_SQL} AS k
                FROM input
                -- The latest resolution stored for the episode, if any.
                LEFT JOIN LATERAL (
                    SELECT x.refire, x.received_at FROM alert_events x
                    WHERE x.fingerprint = input.f AND x.starts_at = input.s
                      AND x.status = 'resolved'
                    ORDER BY x.refire DESC LIMIT 1) AS last_resolved ON true
                -- For a resolved event: the latest occurrence that fired, and a resolution
                -- already stored with the same endsAt (a copy of that one).
                LEFT JOIN LATERAL (
                    SELECT max(x.refire) AS refire FROM alert_events x
                    WHERE input.st = 'resolved' AND x.fingerprint = input.f
                      AND x.starts_at = input.s AND x.status = 'firing') AS last_firing
                    ON true
                LEFT JOIN LATERAL (
                    SELECT x.refire FROM alert_events x
                    WHERE input.st = 'resolved' AND x.fingerprint = input.f
                      AND x.starts_at = input.s AND x.status = 'resolved'
                      AND x.ends_at = input.e
                    ORDER BY x.refire DESC LIMIT 1) AS same_end ON true
            ), stored AS (
                INSERT INTO alert_events (
                    fingerprint, starts_at, status, refire, ends_at, labels, annotations,
                    generator_url, alertname, group_key, receiver,
                    state, done_at, settled_reason)
                SELECT f, s, st, k, e, l, a, g, n, gk, r,
                       CASE WHEN sr IS NULL THEN 'pending' ELSE 'done' END,
                       CASE WHEN sr IS NULL THEN NULL ELSE remediator_now() END, sr
                FROM keyed
                -- One key order for every writer: concurrent batches cannot deadlock
                -- (but for batches too large for one statement, each written as several,
                -- whose order is the notifications'; PostgreSQL then ends one of the two,
                -- which intake writes again one notification at a time). Copies of one key
                -- in the batch in the document's order (gi, ji): the first is inserted, the
                -- one insert_event_groups answers accepted; left to the sort, a later copy
                -- (other labels) was stored for most such keys.
                ORDER BY f, s, st, k, gi, ji
                ON CONFLICT ON CONSTRAINT alert_events_dedupe DO NOTHING
                RETURNING fingerprint, starts_at, status, state, md5(alertname) AS lane
            ), woken AS (
                -- Wake the workers only when something was queued for them, naming the lanes
                -- queued (a worker whose slots a storm fills claims a lane with nothing in
                -- progress at once: receiver/worker/express.py), or none past $4 of them.
                SELECT pg_notify($2, CASE WHEN count(DISTINCT lane) <= $4
                                          THEN string_agg(DISTINCT lane, ',') ELSE '' END)
                FROM stored WHERE state = 'pending'
                HAVING count(*) > 0
            )
            SELECT fingerprint, starts_at, status, (SELECT count(*) FROM woken) AS woken
            FROM stored
            """,
            document,
            WORK_CHANNEL,
            float(self.late_delivery_window_s),
            MAX_HINTED_LANES,
        )
        return rows

    # -- the event queue ----------------------------------------------------------------

    async def claim_events(
        self, owner: str, limit: int, lease_s: float, *, after_lane: str = ""
    ) -> ClaimedEvents:
        """Lease up to ``limit`` due events to ``owner`` for ``lease_s`` seconds, alert names
        in turn starting after the lane ``after_lane`` (``receiver.store.claims``: the SQL, how
        lanes are served, and why a claim costs the same whatever is stored).

        Due: pending with ``not_before <= remediator_now()``, or claimed with an expired lease
        (its worker died: that counts as a failed attempt, ``last_error`` says so). SKIP LOCKED lets
        replicas claim side by side without waiting on each other. An event is claimable only
        at the head of its alert's queue (the events of its fingerprint still pending or
        claimed): a claimed one heads it, else the oldest. So the events of one alert are never
        processed concurrently, and in arrival order, except that a dead event drops out of the
        queue and, if retried, waits for the event in progress, if any, and goes next.
        Returned in claim order; ``next_lane`` of the result is the cursor for the next claim.
        An event whose labels or annotations cannot be read back (an edit of the table) is not
        returned: it is dead at once, saying why (``claimed_events``, ``settle_unreadable``).
        """
        if limit <= 0:
            return ClaimedEvents([], walked=None, limit=limit)
        # The plan is pinned: walk the claim indexes in order and stop at the window.
        # Statistics do not say what a storm queued since: with a replica's expired leases
        # (3,000, before any ANALYZE, or after one that saw only done events) the planner would
        # rather bitmap-scan every expired lease and sort them (6,016 rows read for a claim of
        # 2; tests/integration/test_claim_flat.py). The function carries the settings
        # (migration 0018), so the claim is one statement in a transaction of its own: one
        # round trip, through a transaction pooler too.
        with translate():
            rows = await self._pool.fetch(
                CLAIM_EVENTS_CALL,
                owner,
                limit,
                float(lease_s),
                # Per lane: the batch, and room for rows other workers are locking at the same
                # moment (SKIP LOCKED).
                limit * 2 + CLAIM_WINDOW // 4,
                after_lane,
                LANES,
            )
        walked = rows[0]["walked"] if rows else None
        events, unreadable = claimed_events(rows)
        for event_id, (attempts, error) in unreadable.items():
            await self.settle_unreadable(event_id, owner, attempts, error)
        return ClaimedEvents(events, walked=walked, limit=limit)

    async def queue_depth(self) -> int:
        """Events still queued (pending or claimed); dead ones are counted apart."""
        return await self._depth(EVENTS)

    async def next_event_due(self) -> datetime | None:
        """When the earliest pending event is due (the store's clock); None when none is. For
        the rule tester's clock (ruletest/player.py): it reads every pending event, as no index
        orders them by due time (migration 0028)."""
        return await self._next_due(EVENTS)

    async def record_skips(self, event_id: int, skips: Iterable[Skip]) -> None:
        """Keep why the engine skipped rules for this event (``[{"rule", "reason"}]``), for
        review through the API. Replaces what an earlier attempt recorded: the plan for an
        event is the same however often it is retried.

        A rule that matched and was skipped (an invalid target, a denied namespace) is a
        decision not to act: it is also audited (``event.skipped``), once, so the record of it
        outlives the event's retention. Reasons about the event as a whole (no rule, no open
        run, a late copy) are not: a catch-all feed has one per alert."""
        data = [{"rule": skip.rule, "reason": skip.reason} for skip in skips]
        text = canonical_json(data)
        if not any(item["rule"] for item in data):
            with translate():
                await self._pool.execute(
                    "UPDATE alert_events SET skips = $2::jsonb WHERE id = $1", event_id, text
                )
            return
        async with self._tx() as conn:
            row = await conn.fetchrow(
                """UPDATE alert_events SET skips = $2::jsonb
                   WHERE id = $1 AND skips IS DISTINCT FROM $2::jsonb
                   RETURNING fingerprint, alertname, status""",
                event_id,
                text,
            )
            if row is not None:
                await append_in_tx(
                    conn,
                    "event.skipped",
                    None,
                    row["fingerprint"],
                    {
                        "event_id": event_id,
                        "alertname": row["alertname"],
                        "status": row["status"],
                        "skips": data,
                    },
                )

    async def get_event(self, event_id: int) -> dict[str, Any] | None:
        """One event with its queue state, for review and tests; its ``skips`` decoded (the
        stored text, with ``skips_unreadable`` why, when they cannot be read back)."""
        with translate():
            row = await self._pool.fetchrow(
                f"""SELECT {event_columns()}, state, lease_owner, not_before, done_at,
                           settled_reason, failures, dead_at, skips::text AS skips
                    FROM alert_events WHERE id = $1""",
                event_id,
            )
        if row is None:
            return None
        # Skips edited to be unreadable: given as stored, saying why (as the queue API does);
        # a run taken up reads this event back (its labels), and must not fail on them.
        skips, why = stored_data(row["skips"])
        return {**dict(row), "skips": skips, **({"skips_unreadable": why} if why else {})}

    async def prune_events(self, older_than_s: float) -> int:
        """Retention: delete finished events older than the given age, but those a run still
        to be taken up again reads back (``EVENTS.keep``). Never touches audit."""
        return await self._prune(EVENTS, older_than_s)
