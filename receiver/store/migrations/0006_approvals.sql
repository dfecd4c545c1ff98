-- 0006: approvals of risky steps, bound to the plan an engineer saw, and the run outcomes an
-- approval can end a run with (rejected, expired, cancelled). See receiver/store/approvals.py.
CREATE TABLE approvals (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    run_id           uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    step_idx         integer     NOT NULL,
    rule             text        NOT NULL,
    target_kind      text        NOT NULL,
    target_namespace text        NOT NULL,
    target_name      text        NOT NULL,
    action           text        NOT NULL,
    risk             text        NOT NULL CHECK (risk IN ('low', 'high')),
    -- The step's exact change as preview() computed it against live state, with its
    -- preconditions; plan_hash is the SHA-256 of its canonical JSON (receiver/approvals/plan.py).
    plan             jsonb       NOT NULL,
    plan_hash        text        NOT NULL,
    -- Why, for the approver (the alert, its links); shown, not hashed.
    context          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    requested_at     timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    state            text        NOT NULL DEFAULT 'pending' CHECK (state IN (
                         'pending', 'approved', 'rejected', 'expired', 'cancelled', 'superseded')),
    decided_by       text,
    decided_at       timestamptz,
    channel          text,
    source_ip        text,
    user_agent       text,
    token_id         text,
    reason           text
);

-- At most one open request per step: asking again while one is pending returns that one.
CREATE UNIQUE INDEX approvals_one_pending_per_step ON approvals (run_id, step_idx)
    WHERE state = 'pending';
CREATE INDEX approvals_by_run ON approvals (run_id, step_idx, requested_at DESC);
CREATE INDEX approvals_requested ON approvals (requested_at DESC, id DESC);
CREATE INDEX approvals_pending_expiry ON approvals (expires_at) WHERE state = 'pending';

ALTER TABLE runs DROP CONSTRAINT runs_outcome_check;
ALTER TABLE runs ADD CONSTRAINT runs_outcome_check CHECK (outcome IN (
    'pending', 'running', 'awaiting_approval', 'verifying', 'resolved', 'succeeded', 'dry_run',
    'refused', 'failed', 'rejected', 'expired', 'cancelled'));
