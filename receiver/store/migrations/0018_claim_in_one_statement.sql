-- 0018: the event claim is one statement: one round trip instead of three.
--
-- The claim's plan is pinned (no sequential or bitmap scans: receiver/store/claims.py says why),
-- and until now the worker set that with SET LOCAL, so a claim took three round trips: BEGIN
-- with the settings, the claim, COMMIT. In a storm the events in progress wait for the next
-- claim, and each round trip waits its turn on a busy event loop: the claim was half of the
-- worker's round trips per batch of events. A function carries its settings with it (they are
-- in force while it runs, its statement's planning included, and reset when it returns), so
-- the claim is now one statement in a transaction of its own, and it still works through a
-- transaction pooler, which keeps no session state.
--
-- The body is receiver.store.claims.CLAIM_EVENTS_SQL as it was when this migration was written
-- (tests/integration/test_pinned_plans.py keeps the two equal: a change to the claim's SQL
-- takes a new migration that replaces this function). Parameters: owner, limit, lease seconds,
-- per-lane window, the cursor lane ('' for none), lanes.
CREATE FUNCTION claim_alert_events(text, bigint, double precision, bigint, text, integer)
RETURNS TABLE (
    id bigint, fingerprint text, starts_at text, status text, ends_at text, labels text,
    annotations text, generator_url text, group_key text, receiver text,
    received_at timestamptz, attempts integer, lease_until timestamptz, last_error text,
    refire integer, failures integer, lane text, rank bigint, ord integer, walked text
)
LANGUAGE plpgsql
SET enable_seqscan = off
SET enable_bitmapscan = off
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
     WHERE q.fingerprint = e.fingerprint AND q.state IN ('pending', 'claimed')
     ORDER BY q.id LIMIT 1))
              ORDER BY e.not_before, e.id LIMIT $4) head
    ) c
    UNION ALL
    (SELECT e.id, 0, 0 FROM alert_events e
     WHERE e.state = 'claimed' AND e.lease_until < remediator_now() AND e.id = coalesce(
    (SELECT q.id FROM alert_events q
     WHERE q.fingerprint = e.fingerprint AND q.state = 'claimed' ORDER BY q.id LIMIT 1),
    (SELECT q.id FROM alert_events q
     WHERE q.fingerprint = e.fingerprint AND q.state IN ('pending', 'claimed')
     ORDER BY q.id LIMIT 1))
     ORDER BY e.lease_until LIMIT $4)
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
