-- 0005: bounded attempts and a dead-letter state for both queues; the rules skipped for an event.
--
-- An item whose processing keeps failing (an error, or a worker that died holding it) ends
-- 'dead' after worker.max_attempts failures, with its last error, instead of being retried for
-- ever. A dead item is out of the queue: it no longer holds back the later events of its alert,
-- and it stays until an operator retries it (back to pending) or drops it (done, with the reason
-- in settled_reason). receiver/store/queues.py lists them; the worker decides when one dies.

ALTER TABLE alert_events DROP CONSTRAINT alert_events_state_check;
ALTER TABLE alert_events ADD CONSTRAINT alert_events_state_check
    CHECK (state IN ('pending', 'claimed', 'done', 'dead'));
ALTER TABLE alert_events
    -- Failed attempts (attempts counts every claim, deferrals included): the dead-letter bound.
    ADD COLUMN failures integer     NOT NULL DEFAULT 0,
    ADD COLUMN dead_at  timestamptz,
    -- The rules the engine skipped for this event, with why: [{"rule": ..., "reason": ...}].
    ADD COLUMN skips    jsonb       NOT NULL DEFAULT '[]'::jsonb;

-- Per-fingerprint FIFO over the events still queued: a dead event no longer counts as an older
-- unfinished one, so the alert's later events go ahead without it.
DROP INDEX alert_events_open_by_fingerprint;
CREATE INDEX alert_events_queued_by_fingerprint ON alert_events (fingerprint, id)
    WHERE state IN ('pending', 'claimed');
-- The dead letters: listed, counted for /metrics.
CREATE INDEX alert_events_dead ON alert_events (id) WHERE state = 'dead';

ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('pending', 'claimed', 'done', 'dead'));
ALTER TABLE jobs
    ADD COLUMN failures       integer NOT NULL DEFAULT 0,
    ADD COLUMN dead_at        timestamptz,
    -- Why a job ended without running to completion (dropped by an operator).
    ADD COLUMN settled_reason text;

-- A dead job no longer occupies its (kind, run) slot: a later request for the same work queues
-- a new job (an approval decided after a resume job died must still resume the run).
DROP INDEX jobs_open_once;
CREATE UNIQUE INDEX jobs_open_once ON jobs (kind, run_id) WHERE state IN ('pending', 'claimed');
CREATE INDEX jobs_dead ON jobs (id) WHERE state = 'dead';
