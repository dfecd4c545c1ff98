-- 0043: a job that finishes what the end of a run or of its approvals began.
--
-- Dropping a dead or pending job by hand ends, in its own transaction, the run, steps and
-- approvals only that job would have moved (receiver/store/job_ends.py). What follows such an
-- end, the budget slot the run never used given back and the approvers told that its approval
-- is cancelled, was done by the HTTP drop after the commit: a crash, Redis or the approvers'
-- channel not answering in between lost it (the slot stayed spent for the budget's window, the
-- approval message said "waiting" for good), and a slow channel held the drop's answer. The
-- drop now queues a 'finish_end' job in its transaction (receiver/pipeline/finish_end.py),
-- retried until both are done; so does every other ending of a run or an approval (an
-- approval expired, rejected or cancelled, a run its resolution overtook: store/finish.py).
--
-- A replica of the release before cannot read the kind (its JobKind has no such member): during
-- a rolling update its claim of a batch holding such a job fails, and that batch's jobs wait
-- for their lease (worker.lease, 60 s) to end, to be claimed again, by a new replica or by it.
-- Nothing is lost or done twice; the batch is late.
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('resume_run', 'verify_deadline', 'resume_resolve', 'release_lock',
                    'finish_end'));
