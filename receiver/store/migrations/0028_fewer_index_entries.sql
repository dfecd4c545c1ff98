-- 0028: three fewer index entries for each storm event, and one index no query reads.
--
-- A refused storm event writes its alert event once and updates it twice (claimed, done), and
-- writes its run, its steps and three audit rows: every index over those rows is written on
-- each (an update that changes `state` or `outcome`, which partial indexes name, is never HOT),
-- and each entry is a WAL record. These indexes were written for nothing:
--
-- runs_target_created (target_kind, target_namespace, target_name, created_at DESC) and
-- runs_pair_created (target_name, target_namespace, target_kind, rule, created_at DESC, id DESC)
-- were two walks of one target's runs by time, the second within one rule. One index serves
-- both: (target_name, target_namespace, target_kind, created_at DESC, id DESC, rule), under the
-- name runs_pair_created. A target's runs come newest first, ordered to the id (a page of runs
-- on a target needs no sort now: before, the ties of created_at were sorted); the rule, last,
-- is compared in the index, so the runs of other rules on the target are passed over without
-- reading them from the table. The plans, on 130,000 runs over 21 rules and 11,000 targets:
--   - engine_history, 'recent' (a (rule, target) pair's newest runs in the window): Index Cond
--     on the target, created_at >= the window's start and the rule; the same rows read. (In
--     the storm round its cached plan had taken runs_target_created, the rule left to a filter
--     on the row: 0.94 of its 1 scan an event.)
--   - a page of runs by target (receiver/store/paging.py), with or without a rule: an index
--     scan in the page's order, no sort (was runs_target_created and an incremental sort; the
--     rule and target: runs_pair_created);
--   - by rule, alertname, outcome, time or none: runs_rule_created, runs_alertname_hash_created,
--     runs_created, unchanged; by alert: runs_episode, runs_fingerprint_open and the unique
--     runs_once_per_occurrence (rule, fingerprint, starts_at, refire), unchanged.
--
-- alert_events_due (not_before, id) over pending events was the claim's index before migration
-- 0013; the claim walks alert_events_pending_lanes since, and the only read left on it was the
-- earliest due time of a pending event (EventQueue.next_event_due), which only the rule tester's
-- simulated clock asks (receiver/ruletest/player.py), on a store of its own with a few events:
-- that min(not_before) is now a scan of alert_events_pending_lanes, the pending events alone.
-- Every event was written into it at intake, and again when released to pending.
--
-- alert_events_queued_by_fingerprint (fingerprint, id) over pending and claimed events gave the
-- claim the oldest queued event of an alert, when the alert has none claimed (the head of its
-- queue: receiver/store/claims.py). With none claimed, the oldest queued is the oldest pending,
-- so the claim now asks for that, through alert_events_pending_by_fingerprint over pending
-- events only (an index-only scan, the fingerprint its Index Cond, one probe for each event the
-- walk passes, as before), and a claim no longer writes the event it claims into that index a
-- second time (the claimed ones have alert_events_claimed_by_fingerprint, 0017). The claim's
-- function is replaced with receiver.store.claims.CLAIM_EVENTS_SQL as it is now
-- (test_pinned_plans.py keeps the two equal), with its parameters, columns and settings. No
-- index holds both states now, so the queue depth (EventQueue.queue_depth, the gauge) is two
-- counts, one through each state's partial index (Leases._depth): the one count of both read
-- the whole table (116 ms with 213,000 events stored, against 2 ms for the two).
--
-- runs_verifying (verify_deadline) over verifying runs was read by no statement since
-- verification deadlines are jobs (migration 0004; receiver/store/jobs.py): a run is read by
-- its id when its deadline job comes.
--
-- Upgrading: the new indexes are built in the migration's transaction on a busy 2-core machine:
-- runs_pair_created with runs locked (0.7 s for 130,000 runs, so some 5 s a million; runs wait
-- to be written meanwhile, an older replica's too), alert_events_pending_by_fingerprint with
-- alert_events locked (a scan of every event for the few pending ones: 0.08 s for 213,000, so
-- some 0.5 s a million; intake waits meanwhile).
--
-- In the storm round (`python -m bench --storm-only --stored 100000`, in turn with the code
-- before), a refused event's WAL went from 46.8 records and 8.4 kB to 43.5 and 8.0 kB
-- (docs/performance-history.md, stop 29).
DROP INDEX runs_target_created;
DROP INDEX runs_pair_created;
CREATE INDEX runs_pair_created
    ON runs (target_name, target_namespace, target_kind, created_at DESC, id DESC, rule);
DROP INDEX runs_verifying;
DROP INDEX alert_events_due;
CREATE INDEX alert_events_pending_by_fingerprint ON alert_events (fingerprint, id)
    WHERE state = 'pending';
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
    (SELECT e.id, 0, 0 FROM alert_events e
     WHERE e.state = 'claimed' AND e.lease_until < remediator_now() AND e.id = coalesce(
    (SELECT q.id FROM alert_events q
     WHERE q.fingerprint = e.fingerprint AND q.state = 'claimed' ORDER BY q.id LIMIT 1),
    (SELECT q.id FROM alert_events q
     WHERE q.fingerprint = e.fingerprint AND q.state = 'pending'
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
DROP INDEX alert_events_queued_by_fingerprint;
