-- 0001: alert events (the durable intake queue), runs, steps and the append-only audit log.
-- Applied by receiver/store/migrate.py in one transaction, under an advisory lock.

-- One alert of one notification. Dedupe key: (fingerprint, starts_at, status); starts_at is the
-- raw RFC 3339 string Alertmanager sent, so keys never depend on timestamp parsing.
CREATE TABLE alert_events (
    id            bigserial   PRIMARY KEY,
    fingerprint   text        NOT NULL,
    starts_at     text        NOT NULL,
    status        text        NOT NULL CHECK (status IN ('firing', 'resolved')),
    ends_at       text        NOT NULL DEFAULT '0001-01-01T00:00:00Z',
    labels        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    annotations   jsonb       NOT NULL DEFAULT '{}'::jsonb,
    generator_url text        NOT NULL DEFAULT '',
    alertname     text        NOT NULL DEFAULT '',
    group_key     text        NOT NULL DEFAULT '',
    receiver      text        NOT NULL DEFAULT '',
    received_at   timestamptz NOT NULL DEFAULT now(),
    -- Queue state: pending -> claimed (leased to one worker) -> done.
    state         text        NOT NULL DEFAULT 'pending'
                              CHECK (state IN ('pending', 'claimed', 'done')),
    lease_owner   text,
    lease_until   timestamptz,
    attempts      integer     NOT NULL DEFAULT 0,
    not_before    timestamptz NOT NULL DEFAULT now(),
    last_error    text,
    done_at       timestamptz,
    CONSTRAINT alert_events_dedupe UNIQUE (fingerprint, starts_at, status)
);

-- The claim query: pending work that is due, and leases that ran out (a worker crashed).
CREATE INDEX alert_events_due ON alert_events (not_before, id) WHERE state = 'pending';
CREATE INDEX alert_events_leases ON alert_events (lease_until) WHERE state = 'claimed';
-- Per-fingerprint FIFO: an event waits while an older one of the same alert is unfinished.
CREATE INDEX alert_events_open_by_fingerprint ON alert_events (fingerprint, id)
    WHERE state <> 'done';
-- Retention prunes finished events by age.
CREATE INDEX alert_events_done_at ON alert_events (done_at) WHERE state = 'done';

-- One remediation run: at most one per (rule, episode), enforced here rather than by a read.
CREATE TABLE runs (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    rule              text        NOT NULL,
    fingerprint       text        NOT NULL,
    starts_at         text        NOT NULL,
    alertname         text        NOT NULL DEFAULT '',
    event_id          bigint,     -- no FK: retention may prune the event, never the run
    target_kind       text        NOT NULL,
    target_namespace  text        NOT NULL,
    target_name       text        NOT NULL,
    outcome           text        NOT NULL DEFAULT 'pending' CHECK (outcome IN (
                          'pending', 'running', 'awaiting_approval', 'verifying', 'resolved',
                          'succeeded', 'dry_run', 'refused', 'failed')),
    dry_run           boolean     NOT NULL DEFAULT false,
    occurrence        integer     NOT NULL DEFAULT 1,
    verify_within_s   double precision,
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    verify_deadline   timestamptz,
    resolved_at       timestamptz,
    time_to_resolve_s double precision,
    refusal_guard     text,
    refusal_reason    text,
    retry_at          timestamptz,
    error             text,
    CONSTRAINT runs_once_per_episode UNIQUE (rule, fingerprint, starts_at)
);

CREATE INDEX runs_created ON runs (created_at DESC, id DESC);
CREATE INDEX runs_episode ON runs (fingerprint, starts_at);
CREATE INDEX runs_rule_created ON runs (rule, created_at DESC);
CREATE INDEX runs_alertname_created ON runs (alertname, created_at DESC);
CREATE INDEX runs_target_created
    ON runs (target_kind, target_namespace, target_name, created_at DESC);
CREATE INDEX runs_verifying ON runs (verify_deadline) WHERE outcome = 'verifying';

-- The steps of a run ('run' phase) and of its on_resolved follow-up ('resolve' phase).
CREATE TABLE steps (
    run_id         uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    phase          text        NOT NULL CHECK (phase IN ('run', 'resolve')),
    idx            integer     NOT NULL,
    action         text        NOT NULL,
    params         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    needs_approval boolean     NOT NULL DEFAULT false,
    outcome        text        NOT NULL DEFAULT 'pending',
    message        text        NOT NULL DEFAULT '',
    before         jsonb,
    after          jsonb,
    attempts       integer     NOT NULL DEFAULT 0,
    started_at     timestamptz,
    finished_at    timestamptz,
    PRIMARY KEY (run_id, phase, idx)
);

-- Append-only audit log. Each row carries the hash of the row before it:
--   hash = sha256(prev_hash || canonical JSON of (id, at, kind, run_id, fingerprint, data)),
-- computed by the application while it holds the single audit_head row FOR UPDATE, so the chain
-- is linear even with many writers. `remediator audit verify` recomputes it.
CREATE TABLE audit_log (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL,
    kind        text        NOT NULL,
    run_id      uuid,
    fingerprint text,
    data        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    prev_hash   text        NOT NULL,
    hash        text        NOT NULL UNIQUE
);

CREATE INDEX audit_log_run ON audit_log (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE audit_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_id   bigint,
    last_hash text    NOT NULL
);
INSERT INTO audit_head (singleton, last_id, last_hash) VALUES (true, NULL, '');

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();
