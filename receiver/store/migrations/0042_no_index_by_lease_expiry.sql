-- 0042: a claim no longer writes its event into an index by lease expiry.
--
-- A storm event's alert event is written three times: inserted pending at intake, updated to
-- claimed, updated to done. `state` is named by the partial indexes' predicates, so neither
-- update is HOT: each writes a new heap tuple and an entry in every index whose predicate the
-- new version meets, one WAL record each. Counted from the WAL of a quick storm
-- (docs/performance-history.md, stop 40): of 36.3 records an event, 17.1 are the alert event's:
-- intake 6 (heap, the insert's confirmation, alert_events_pkey, _dedupe, _pending_lanes,
-- _pending_by_fingerprint), the claim 7 (the FOR UPDATE lock, the update and, when the new
-- version goes to another page, a lock of the old one first; _pkey, _dedupe,
-- _claimed_by_fingerprint, _leases), the completion 4.5 (the update, that lock again, _pkey,
-- _dedupe, _done_at).
--
-- alert_events_leases (lease_until) WHERE state = 'claimed' was read by one statement: the
-- claim's look for expired leases (a worker died), oldest first. The claimed events are few
-- (the batches the workers hold, and those of a worker that died), and
-- alert_events_claimed_by_fingerprint (fingerprint, id) holds the same rows: the claim now walks
-- that one in its order, reading the live claims it passes and the expired ones it takes, and
-- stops at its limit as before (tests/integration/test_claim_flat.py: 3,000 expired leases of a
-- worker that died, a claim of 2 reads under 100 rows). Expired leases are taken in the order
-- of their alert's fingerprint, not of their expiry: they are all due, and each claim takes
-- them before any pending event, so a storm's worth are all taken within a few claims either
-- way. A lease's extension (the keeper, receiver/worker/attempt.py) changes only lease_until,
-- which no index names now: it can be a HOT update.
--
-- The claim's function is replaced with receiver.store.claims.CLAIM_EVENTS_SQL as it is now
-- (tests/integration/test_pinned_plans.py keeps the two equal), with its parameters, columns
-- and settings (0031's jit = off among them).
--
-- Upgrading: dropping the index takes alert_events' lock for a moment; nothing is built. A
-- replica of the release before this one, running during a rolling update, claims through the
-- function, so through the new walk; none of its statements names the dropped index, and its
-- queue depth (two counts through the partial index of each state) reads
-- alert_events_claimed_by_fingerprint for the claimed ones. It can do all it did.
DROP INDEX alert_events_leases;
CREATE OR REPLACE FUNCTION claim_alert_events(text, bigint, double precision, bigint, text, integer)
RETURNS TABLE (
    id bigint, fingerprint text, starts_at text, status text, ends_at text, labels text,
    annotations text, generator_url text, group_key text, receiver text,
    received_at timestamptz, attempts integer, lease_until timestamptz, last_error text,
    refire integer, failures integer, lane text, rank bigint, ord integer, walked text
)
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
SET jit = off
AS $claim$
#variable_conflict use_column
BEGIN
RETURN QUERY
WITH RECURSIVE
after (lane, ord) AS (
        (SELECT md5(alertname), 1 FROM alert_events
         WHERE state = 'pending' AND md5(alertname) > $5
           AND not_before <= remediator_now()
         ORDER BY md5(alertname) LIMIT 1)
        UNION ALL
        SELECT (SELECT md5(x.alertname) FROM alert_events x
                WHERE x.state = 'pending' AND md5(x.alertname) > w.lane
                  AND x.not_before <= remediator_now()
                ORDER BY md5(x.alertname) LIMIT 1), w.ord + 1
        FROM after w WHERE w.lane IS NOT NULL AND w.ord < 1 + $6 - 1
    ),
from_start (lane, ord) AS (
        (SELECT md5(alertname), 100001 FROM alert_events
         WHERE state = 'pending' AND md5(alertname) > ''
           AND not_before <= remediator_now()
         ORDER BY md5(alertname) LIMIT 1)
        UNION ALL
        SELECT (SELECT md5(x.alertname) FROM alert_events x
                WHERE x.state = 'pending' AND md5(x.alertname) > w.lane
                  AND x.not_before <= remediator_now()
                ORDER BY md5(x.alertname) LIMIT 1), w.ord + 1
        FROM from_start w WHERE w.lane IS NOT NULL AND w.ord < 100001 + $6 - 1
    ),
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
                AND e.not_before <= remediator_now() AND e.id = coalesce(
    (SELECT q.id FROM alert_events q
     WHERE q.fingerprint = e.fingerprint AND q.state = 'claimed' ORDER BY q.id LIMIT 1),
    (SELECT q.id FROM alert_events q
     WHERE q.fingerprint = e.fingerprint AND q.state = 'pending'
     ORDER BY q.id LIMIT 1))
              ORDER BY e.not_before, e.id LIMIT $4) head
    ) c
    UNION ALL
    -- Expired leases in the order of alert_events_claimed_by_fingerprint: the claimed events
    -- are few (the workers' batches, and those of a worker that died), and an index of their
    -- own by lease_until cost every claim an entry (migration 0042).
    (SELECT e.id, 0, 0 FROM alert_events e
     WHERE e.state = 'claimed' AND e.lease_until < remediator_now() AND e.id = coalesce(
    (SELECT q.id FROM alert_events q
     WHERE q.fingerprint = e.fingerprint AND q.state = 'claimed' ORDER BY q.id LIMIT 1),
    (SELECT q.id FROM alert_events q
     WHERE q.fingerprint = e.fingerprint AND q.state = 'pending'
     ORDER BY q.id LIMIT 1))
     ORDER BY e.fingerprint, e.id LIMIT $4)
),
picked AS (
    SELECT e.id, c.rank, c.ord FROM alert_events e JOIN candidates c ON c.id = e.id
    -- Re-checked on the locked row: another worker may have claimed it since.
    WHERE ((e.state = 'pending' AND e.not_before <= remediator_now()) OR (e.state = 'claimed' AND e.lease_until < remediator_now()))
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
    SET state = 'claimed', lease_owner = $1, attempts = e.attempts + 1,
        lease_until = remediator_now() + make_interval(secs => $3),
        failures = e.failures + (e.state = 'claimed')::int,
        last_error = CASE WHEN e.state = 'claimed' THEN 'lease expired: ' || coalesce(e.lease_owner, 'its worker') || ' stopped holding it before it was settled'
                          ELSE e.last_error END
    FROM picked WHERE e.id = picked.id
    RETURNING 
    e.id, e.fingerprint, e.starts_at, e.status, e.ends_at, e.labels::text AS labels,
    e.annotations::text AS annotations, e.generator_url, e.group_key, e.receiver,
    e.received_at, e.attempts, e.lease_until, e.last_error, e.refire
, e.failures, md5(e.alertname) AS lane, picked.rank, picked.ord
)
-- Every claimed row with the last lane walked; one row of NULLs but that lane when none was
-- claimed (``next_lane``: a claim short of its limit moves the cursor there).
SELECT claimed.*, walk.walked
FROM (SELECT (SELECT lane FROM lanes ORDER BY ord DESC LIMIT 1) AS walked) walk
LEFT JOIN claimed ON true;
END
$claim$;
