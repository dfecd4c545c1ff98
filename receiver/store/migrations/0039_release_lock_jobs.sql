-- 0039: a job that gives back a target lock an ended run's pass could not.
--
-- A pass that ends a run without the lock's release it sends reaching Redis (a blip; a Redis
-- that persists keeps the lock over its restart) logged the failure, and the lock held the
-- target until guards.lock_ttl: every new alert of that target waited it out, though the run
-- that held it had ended. The pass now queues a 'release_lock' job with the exact token to
-- give back (receiver/pipeline/lock_release.py), retried until Redis answers.
--
-- A replica of the release before that claims such a job during a rolling update answers it
-- with a retry ("unknown job kind"), which a new replica takes up in its turn.
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('resume_run', 'verify_deadline', 'resume_resolve', 'release_lock'));
