-- 0039: a job that gives back a target lock an ended run's pass could not.
--
-- A pass that ends a run without the lock's release it sends reaching Redis (a blip; a Redis
-- that persists keeps the lock over its restart) logged the failure, and the lock held the
-- target until guards.lock_ttl: every new alert of that target waited it out, though the run
-- that held it had ended. The pass now queues a 'release_lock' job with the exact token to
-- give back (receiver/pipeline/lock_release.py), retried until Redis answers.
--
-- A replica of the release before cannot read the kind (its JobKind has no such member): during
-- a rolling update its claim of a batch holding such a job fails, and that batch's jobs wait
-- for their lease (worker.lease, 60 s) to end, to be claimed again, by a new replica or by it.
-- Nothing is lost or done twice; the batch is late. Such a job is only queued while Redis does
-- not answer a release.
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('resume_run', 'verify_deadline', 'resume_resolve', 'release_lock'));
