"""The event claim's SQL: a bounded batch of due events, alert names served in turn.

Fairness: every alert name is a *lane* (``md5(alertname)``: an alert name has no length limit,
a btree entry has). A claim walks up to ``LANES`` lanes that hold pending events, starting
after the lane the worker served last (its cursor) and wrapping round, and takes the heads of
each lane's queue; the batch interleaves them, the first due event of every lane before the
second of any. So an alert that arrives during a storm of another alert name is claimed by the
next claim, not after the storm's backlog, and a worker's successive claims rotate through more
lanes than one claim takes. Within a lane, order is arrival (``not_before``, ``id``).

Flat: every walk starts at the head of a partial index over *pending* rows
(``alert_events_pending_lanes``, migration 0013) and stops at its window, so a claim costs the
same however many finished events are stored. The lane walk is a loose index scan (one index
probe per lane, the recursive CTEs ``after`` and ``from_start``). The plan must not depend on
statistics, which a storm outdates at once: the picks are locked by primary key, the state
column has none (migration 0016), so no pending-only index looks empty and free to walk, and
the claim runs with ``CLAIM_PLAN_SETTINGS`` (no bitmap scan: one would read every expired lease).

The worker runs it as ``CLAIM_EVENTS_CALL``: the function ``claim_alert_events`` (migration 0018)
whose body is ``CLAIM_EVENTS_SQL`` and which carries those settings, so a claim is one statement
and one round trip, not three (BEGIN with ``SET LOCAL``, the claim, COMMIT). A change to
``CLAIM_EVENTS_SQL`` takes a migration that replaces the function
(``tests/integration/test_pinned_plans.py`` fails until it does).

The per-alert order of ``receiver.store.events`` is kept: only the head of each alert's queue
is a candidate (a claimed event if there is one, else the oldest). Expired leases (a worker
died) are taken first, in the order of ``alert_events_claimed_by_fingerprint`` (fingerprint,
id): a claim reads the live claims it passes and the expired ones it takes, never every expired
lease (migration 0042 dropped the index by expiry time).

Each row also carries ``walked``, the last lane the walk reached; a claim that took nothing
returns one row of NULLs with it (``next_lane``).

Parameters: $1 owner, $2 limit, $3 lease seconds, $4 per-lane window, $5 the cursor lane
('' for none), $6 ``LANES``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from receiver.store.event_rows import UnreadableEvent
from receiver.store.leases import claim_assignments, due_sql
from receiver.store.records import ClaimedEvent, event_columns, event_from_row

__all__ = [
    "CLAIM_EVENTS_CALL",
    "CLAIM_EVENTS_SQL",
    "CLAIM_PLAN_SETTINGS",
    "LANES",
    "MAX_HINTED_LANES",
    "ClaimedEvents",
    "claimed_events",
    "next_lane",
]

# In force while CLAIM_EVENTS_SQL is planned and run (the function's SET clauses; a test runs
# them before it in its transaction): the claim walks its indexes in order and stops at its
# window whatever the statistics say (they lag a storm: EventQueue.claim_events). And no JIT:
# with those paths off, a plan costed over jit_above_cost was compiled at every call on a
# server with JIT (migration 0031).
CLAIM_PLAN_SETTINGS = (
    "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL jit = off"
)

# Lanes one claim walks. More costs index probes on every claim; fewer only slows the rotation.
LANES = 16

# Lanes intake's NOTIFY names at most (33 bytes each; a payload holds 8,000): a batch of more
# alert names than this wakes the workers without naming them (receiver/worker/express.py).
MAX_HINTED_LANES = 64

# The head of an alert's queue, for the row aliased ``e``: a claimed event if there is one (a
# retried dead event is older than the one in progress and must not run beside it), else the
# oldest pending one (with none claimed, the oldest queued). Scalar subqueries, so it stays a
# filter on the ordered walk; each reads the first entry of an index
# (alert_events_claimed_by_fingerprint, alert_events_pending_by_fingerprint), never the alert's
# whole queue: ordered by "claimed first", one alert's 3,000 queued episodes were read and
# sorted for each of them the walk passed, 9,003,005 rows for one claim. The second looks at
# pending events only, so that a claim does not write the event it claims into its index again
# (migration 0028).
_HEAD = """e.id = coalesce(
    (SELECT q.id FROM alert_events q
     WHERE q.fingerprint = e.fingerprint AND q.state = 'claimed' ORDER BY q.id LIMIT 1),
    (SELECT q.id FROM alert_events q
     WHERE q.fingerprint = e.fingerprint AND q.state = 'pending'
     ORDER BY q.id LIMIT 1))"""


def _lane_walk(name: str, start: str, order_base: int) -> str:
    """A recursive CTE ``name`` of (lane, ord): the lanes with due pending events after
    ``start`` (SQL), in lane order, at most ``$6``; ``ord`` counts from ``order_base``.

    Due, not merely pending: lanes whose events all wait out a backoff (after an outage, every
    lane's) would fill the walk, the claim would take nothing and leave the cursor where it
    was, and the next claim would walk the same lanes, hiding due lanes behind them until
    the backoffs ran out. A lane not due is skipped on the index (``not_before`` is its second
    column), reading its entries but no row."""
    return f"""{name} (lane, ord) AS (
        (SELECT md5(alertname), {order_base} FROM alert_events
         WHERE state = 'pending' AND md5(alertname) > {start}
           AND not_before <= remediator_now()
         ORDER BY md5(alertname) LIMIT 1)
        UNION ALL
        SELECT (SELECT md5(x.alertname) FROM alert_events x
                WHERE x.state = 'pending' AND md5(x.alertname) > w.lane
                  AND x.not_before <= remediator_now()
                ORDER BY md5(x.alertname) LIMIT 1), w.ord + 1
        FROM {name} w WHERE w.lane IS NOT NULL AND w.ord < {order_base} + $6 - 1
    )"""


CLAIM_EVENTS_SQL = f"""
WITH RECURSIVE
{_lane_walk("after", "$5", 1)},
{_lane_walk("from_start", "''", 100001)},
lanes AS MATERIALIZED (
    SELECT lane, min(ord) AS ord FROM (
        SELECT lane, ord FROM after WHERE lane IS NOT NULL
        UNION ALL
        SELECT lane, ord FROM from_start WHERE lane IS NOT NULL
    ) walked
    GROUP BY lane ORDER BY min(ord) LIMIT $6
),
-- MATERIALIZED: walked once. Inlined, the planner may loop over every queued row and walk the
-- indexes again for each (47 ms per claim with 300,000 events stored).
candidates AS MATERIALIZED (
    SELECT c.id, c.rank, l.ord
    FROM lanes l
    CROSS JOIN LATERAL (
        SELECT head.id, row_number() OVER (ORDER BY head.not_before, head.id) AS rank
        FROM (SELECT e.id, e.not_before FROM alert_events e
              WHERE e.state = 'pending' AND md5(e.alertname) = l.lane
                AND e.not_before <= remediator_now() AND {_HEAD}
              ORDER BY e.not_before, e.id LIMIT $4) head
    ) c
    UNION ALL
    -- Expired leases in the order of alert_events_claimed_by_fingerprint: the claimed events
    -- are few (the workers' batches, and those of a worker that died), and an index of their
    -- own by lease_until cost every claim an entry (migration 0042).
    (SELECT e.id, 0, 0 FROM alert_events e
     WHERE e.state = 'claimed' AND e.lease_until < remediator_now() AND {_HEAD}
     ORDER BY e.fingerprint, e.id LIMIT $4)
),
picked AS (
    SELECT e.id, c.rank, c.ord FROM alert_events e JOIN candidates c ON c.id = e.id
    -- Re-checked on the locked row: another worker may have claimed it since.
    WHERE {due_sql("e")}
      -- The candidates by primary key. The join alone let the planner, on statistics that
      -- still called the queue small, walk every queued row and filter each against the
      -- candidates: 2,234 rows read for 12 a claim, growing with the backlog of a storm.
      AND e.id = ANY (ARRAY(SELECT id FROM candidates))
    ORDER BY c.rank, c.ord
    LIMIT $2
    FOR UPDATE OF e SKIP LOCKED
),
claimed AS (
    UPDATE alert_events e
    SET {claim_assignments("e", "$3")}
    FROM picked WHERE e.id = picked.id
    RETURNING {event_columns("e")}, e.failures, md5(e.alertname) AS lane, picked.rank, picked.ord
)
-- Every claimed row with the last lane walked; one row of NULLs but that lane when none was
-- claimed (``next_lane``: a claim short of its limit moves the cursor there).
SELECT claimed.*, walk.walked
FROM (SELECT (SELECT lane FROM lanes ORDER BY ord DESC LIMIT 1) AS walked) walk
LEFT JOIN claimed ON true
"""

# The claim as the worker sends it: CLAIM_EVENTS_SQL with CLAIM_PLAN_SETTINGS, in one statement.
CLAIM_EVENTS_CALL = "SELECT * FROM claim_alert_events($1, $2, $3, $4, $5, $6)"


class ClaimedEvents(list[ClaimedEvent]):
    """A claim's events, in claim order, and ``walked``: the last lane its walk reached (None
    when no lane had a due event)."""

    def __init__(self, events: Iterable[ClaimedEvent], *, walked: str | None, limit: int) -> None:
        super().__init__(events)
        self.walked = walked
        self.limit = limit


def next_lane(claims: Sequence[ClaimedEvent], current: str) -> str:
    """The cursor after a claim: the last lane whose first event it took, so the next claim
    starts with the lanes after it; ``current`` when it took none. A claim that took less than
    it had room for took all the walk offered: its cursor is the last lane walked, so lanes
    that could give nothing (their alerts' events in progress elsewhere) are passed over, not
    walked again and again while due lanes wait behind them."""
    if isinstance(claims, ClaimedEvents) and claims.walked and len(claims) < claims.limit:
        return claims.walked
    served = [c for c in claims if c.turn[0] == 1]
    return max(served, key=lambda c: c.turn[1]).lane if served else current


def claimed_events(
    rows: Iterable[Mapping[str, Any]],
) -> tuple[list[ClaimedEvent], dict[int, tuple[int, str]]]:
    """The events of a claim's rows (with an id), in claim order; and, apart, event id -> its
    claim's ``attempts`` and the ``last_error`` of each whose labels or annotations cannot be
    read back (``UnreadableEvent``: an edit of the table). Those are not worked: matched
    against labels guessed (none), an event would act on a guess; raised, one would fail the
    whole claim after it committed, every event of it leased and never worked
    (``EventQueue.claim_events`` settles them)."""
    events: list[ClaimedEvent] = []
    unreadable: dict[int, tuple[int, str]] = {}
    for r in sorted((r for r in rows if r["id"] is not None), key=lambda r: (r["rank"], r["ord"])):
        try:
            event = event_from_row(r)
        except UnreadableEvent as exc:
            unreadable[exc.event_id] = (
                r["attempts"],
                f"{exc}; not matched against any rule: drop it (remediator events drop "
                f"{exc.event_id} --reason TEXT), or correct the row and retry it",
            )
            continue
        events.append(
            ClaimedEvent(
                event=event,
                attempts=r["attempts"],
                lease_until=r["lease_until"],
                last_error=r["last_error"],
                failures=r["failures"],
                lane=r["lane"],
                turn=(r["rank"], r["ord"]),
            )
        )
    return events, unreadable
