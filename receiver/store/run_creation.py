"""The statement ``Runs.create_run`` stores a new run with: its row, its planned steps, their
audit rows, and the completion of its event, in one statement (one round trip, one commit,
group-committed with the other runs the worker writes meanwhile: group.py).

Parameters, in order: $1 rule, $2 fingerprint, $3 starts_at, $4 alertname, $5 event_id,
$6-$8 target kind, namespace and name, $9 the stored outcome, $10 dry_run, $11 occurrence,
$12 verify_within_s, $13 refire, $14 settle_s, $15 decision (JSON), $16 group_key, $17 the
steps' outcome; $18-$23 the steps as arrays (index, action, params as JSON, needs_approval,
message, audit data or NULL); $24 the run.created audit data, $25 the run id (NULL: random);
$26-$29 the refusal (guard, reason, retry_at, the steps' message; NULL: not refused), $30 a
run.refused row's data (NULL: none; ``create_run`` folds a refusal into the run.created data,
receiver/audit_folds.py); $31 the run.announced data (NULL: none, or folded likewise); $32-$33
the event to complete and its owner (NULL: not completed here); $34 the run.admitted data
(NULL: not admitted), $35 its run.outcome data;
$36 the on_resolved steps (JSON); $37-$40 the claim the run is created under when the
statement does not complete its event (``fence_args``; the completion fences it when it does),
$41 the count of claims of the event to complete (``EventLease.attempts``: its claim's own).

A run already stored for the rule and occurrence is left as it is (``id`` NULL): the insert
looks for it first (PostgreSQL's plan in a storm walks ``runs_episode``: the episode's runs of
every rule and refire, few, as the engine's history read of the episode does; the unique
``runs_once_per_occurrence`` finds the one run).

The audit rows, in this order: run.created, each step (unless refused), run.refused (when
given apart) or run.admitted and run.outcome (running), run.announced. The columns: ``id`` of
the run created (NULL when it already existed, or the fence failed), ``ok`` (the fence held)
and ``completed`` (the event was marked done).
"""

from __future__ import annotations

from receiver.store.audit import audit_insert_sql
from receiver.store.fence import held_sql
from receiver.store.leases import complete_sql

__all__ = ["CREATE_RUN_SQL"]

CREATE_RUN_SQL = f"""
WITH completed AS (
    {complete_sql("$32", "$33", "$41")}
), fenced AS ({held_sql("$37", "$38", "$39", "$40")}), held AS (
    -- Completing the event is the fence when this statement does: its UPDATE
    -- finds the event only while ``complete.owner`` holds it under that claim, and locks it.
    SELECT ($32::bigint IS NULL OR EXISTS (SELECT FROM completed))
           AND (SELECT ok FROM fenced) AS ok
), created AS (
    INSERT INTO runs (id, rule, fingerprint, starts_at, alertname, event_id,
                      target_kind, target_namespace, target_name, outcome,
                      dry_run, occurrence, verify_within_s, refire, settle_s,
                      decision, group_key, refusal_guard, refusal_reason,
                      retry_at, finished_at, started_at, on_resolved)
    SELECT coalesce($25::uuid, gen_random_uuid()), $1, $2, $3, $4, $5, $6, $7,
           $8, $9, $10, $11, $12, $13, $14, $15::jsonb, $16, $26, $27, $28,
           CASE WHEN $26::text IS NULL THEN NULL ELSE remediator_now() END,
           CASE WHEN $34::text IS NULL THEN NULL ELSE remediator_now() END,
           $36::jsonb
    WHERE (SELECT ok FROM held)
      -- Not ON CONFLICT: a speculative insert logs one more WAL record, its confirmation, for
      -- every run (a storm's refused event logs about 43). The run of an occurrence is stored
      -- under its event's claim, whose row this statement locks first (the completion, or
      -- the fence), so two of them do not race; an unfenced one that does fails on
      -- runs_once_per_occurrence, and Runs.create_run sends it again, to find the run.
      AND NOT EXISTS (SELECT FROM runs r
                      WHERE r.rule = $1 AND r.fingerprint = $2 AND r.starts_at = $3
                        AND r.refire = $13)
    RETURNING id, fingerprint
), planned AS (
    SELECT * FROM unnest($18::int[], $19::text[], $20::text[], $21::bool[],
                         $22::text[], $23::text[])
        AS p(idx, action, params, needs_approval, message, audited)
), stepped AS (
    INSERT INTO steps (run_id, phase, idx, action, params, needs_approval,
                       outcome, message, attempts)
    SELECT created.id, 'run', p.idx, p.action, p.params::jsonb,
           p.needs_approval,
           CASE WHEN $26::text IS NULL THEN $17 ELSE 'not_run' END,
           CASE WHEN $26::text IS NULL THEN p.message ELSE $29 END, 0
    FROM created, planned p
), audited AS (
    {
    audit_insert_sql(
        '''(SELECT created.id, created.fingerprint, a.idx, a.kind, a.data
            FROM created, (SELECT -1 AS idx, 'run.created' AS kind, $24 AS data
                           UNION ALL
                           SELECT idx, 'step', audited FROM planned
                           WHERE audited IS NOT NULL
                           UNION ALL
                           SELECT 2147483647, 'run.refused', $30
                           WHERE $30::text IS NOT NULL
                           UNION ALL
                           SELECT 2147483648, 'run.admitted', $34
                           WHERE $34::text IS NOT NULL
                           UNION ALL
                           SELECT 2147483649, 'run.outcome', $35
                           WHERE $34::text IS NOT NULL
                           UNION ALL
                           SELECT 2147483650, 'run.announced', $31
                           WHERE $31::text IS NOT NULL) a) AS rows''',
        kind="rows.kind",
        run_id="rows.id",
        fingerprint="rows.fingerprint",
        data="rows.data",
        order_by="rows.idx",
    )
}
)
SELECT (SELECT id::text FROM created) AS id, (SELECT ok FROM held) AS ok,
       EXISTS (SELECT FROM completed) AS completed"""
