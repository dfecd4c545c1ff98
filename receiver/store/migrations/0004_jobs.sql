-- 0004: the job queue. Alert events start runs; jobs take up a run again after it parked:
-- an approval was decided or a guard's retry_at came ('resume_run'), or a VERIFYING run's
-- deadline came ('verify_deadline'). Same lease, SKIP LOCKED claim and NOTIFY wake-up as
-- alert_events (see receiver/store/jobs.py for the claim).
CREATE TABLE jobs (
    id          bigserial   PRIMARY KEY,
    kind        text        NOT NULL CHECK (kind IN ('resume_run', 'verify_deadline')),
    run_id      uuid        NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    payload     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Queue state: pending -> claimed (leased to one worker) -> done.
    state       text        NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'claimed', 'done')),
    not_before  timestamptz NOT NULL DEFAULT now(),
    lease_owner text,
    lease_until timestamptz,
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text,
    -- Asked for again while claimed: completing the claim puts the job back to pending, due
    -- then, so a request made while its job was running is not lost (receiver/store/jobs.py).
    rerun_at    timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    done_at     timestamptz
);

-- One open job per (kind, run): enqueueing again moves the due time of the open one (or its
-- rerun_at while it is claimed) instead of adding a second (ON CONFLICT on this index).
CREATE UNIQUE INDEX jobs_open_once ON jobs (kind, run_id) WHERE state <> 'done';
-- The claim query: pending work that is due, and leases that ran out (a worker crashed).
CREATE INDEX jobs_due ON jobs (not_before, id) WHERE state = 'pending';
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE state = 'claimed';
-- One job of a run at a time: the claim looks at the run's other open jobs.
CREATE INDEX jobs_open_by_run ON jobs (run_id, id) WHERE state <> 'done';
-- Retention prunes finished jobs by age.
CREATE INDEX jobs_done_at ON jobs (done_at) WHERE state = 'done';

-- Runs already verifying when this migration runs were expired by a poll that jobs replace:
-- each gets its deadline job, due when its deadline comes.
INSERT INTO jobs (kind, run_id, not_before)
SELECT 'verify_deadline', id, coalesce(verify_deadline, now())
FROM runs WHERE outcome = 'verifying';
