-- 0028: two fewer index entries for each storm event, and one index no query reads.
--
-- A refused storm event writes its alert event once and updates it twice (claimed, done), and
-- writes its run, three steps and three audit rows: every index over those rows is written on
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
-- reading them from the table. The plans, on the same 100,000 runs:
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
-- runs_verifying (verify_deadline) over verifying runs was read by no statement since
-- verification deadlines are jobs (migration 0004; receiver/store/jobs.py): a run is read by
-- its id when its deadline job comes.
--
-- Upgrading: runs_pair_created is built in the migration's transaction, with runs locked
-- (0.7 s for 130,000 runs on a busy 2-core machine, so some 5 s a million): meanwhile runs
-- wait to be written (an older replica's too), intake does not.
--
-- With the shipped rule's storm of refused events (`python -m bench --storm-only`), a refused
-- event's WAL went from XX records to YY (docs/performance-history.md, stop 29).
DROP INDEX runs_target_created;
DROP INDEX runs_pair_created;
CREATE INDEX runs_pair_created
    ON runs (target_name, target_namespace, target_kind, created_at DESC, id DESC, rule);
DROP INDEX runs_verifying;
DROP INDEX alert_events_due;
