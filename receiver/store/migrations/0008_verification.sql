-- 0008: verification that understands alerts, decisions on live state, the escalation ladder.
--
-- A run is `verified` (formerly `resolved`) when its alert resolves within verify.resolved_within
-- and, with verify.settle, does not fire again on the target for that long after resolving; it
-- is `failed` with verify_result 'not_resolved' (still firing at the deadline) or 'recurred'
-- (fired again while settling). See receiver/store/verification.py.
ALTER TABLE runs
    -- Why these steps: each step's `when` conditions and the live facts they were decided on.
    ADD COLUMN decision      jsonb,
    ADD COLUMN settle_s      double precision,
    -- Set when the alert resolved in time: a firing of the alert on the target before then
    -- fails the run (recurred); reaching it without one verifies the run.
    ADD COLUMN settle_until  timestamptz,
    ADD COLUMN verify_result text CHECK (verify_result IN ('verified', 'not_resolved', 'recurred')),
    -- When verification failed and the rule's on_failed steps were recorded.
    ADD COLUMN escalated_at  timestamptz;

ALTER TABLE runs DROP CONSTRAINT runs_outcome_check;
UPDATE runs SET outcome = 'verified', verify_result = 'verified' WHERE outcome = 'resolved';
UPDATE runs SET verify_result = 'not_resolved'
WHERE outcome = 'failed' AND error = 'alert did not resolve before the verify deadline';
ALTER TABLE runs ADD CONSTRAINT runs_outcome_check CHECK (outcome IN (
    'pending', 'running', 'awaiting_approval', 'verifying', 'verified', 'succeeded', 'dry_run',
    'refused', 'failed', 'rejected', 'expired', 'cancelled'));

-- The run's on_failed steps (the escalation ladder) are a phase of their own.
ALTER TABLE steps DROP CONSTRAINT steps_phase_check;
ALTER TABLE steps ADD CONSTRAINT steps_phase_check
    CHECK (phase IN ('run', 'resolve', 'on_failed'));

-- A firing looks up the settling runs of its (rule, target).
CREATE INDEX runs_settling ON runs (rule, target_kind, target_namespace, target_name)
    WHERE outcome = 'verifying' AND settle_until IS NOT NULL;
