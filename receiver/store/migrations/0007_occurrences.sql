-- 0007: occurrences of an episode, and the resolve path's own job.
--
-- Alertmanager resolves an alert whose source went quiet (its endsAt passed) and fires it again,
-- with the SAME startsAt, when the source sends it again. Such a re-fire is a new occurrence of
-- the episode (fingerprint, starts_at): `refire` numbers them (0 for the first firing), intake
-- assigns it (receiver/store/events.py), and both dedupe keys take it in. Existing rows are all
-- first occurrences.
ALTER TABLE alert_events ADD COLUMN refire integer NOT NULL DEFAULT 0 CHECK (refire >= 0);
ALTER TABLE alert_events DROP CONSTRAINT alert_events_dedupe;
ALTER TABLE alert_events
    ADD CONSTRAINT alert_events_dedupe UNIQUE (fingerprint, starts_at, status, refire);

-- One run per (rule, occurrence).
ALTER TABLE runs ADD COLUMN refire integer NOT NULL DEFAULT 0 CHECK (refire >= 0);
ALTER TABLE runs DROP CONSTRAINT runs_once_per_episode;
ALTER TABLE runs
    ADD CONSTRAINT runs_once_per_occurrence UNIQUE (rule, fingerprint, starts_at, refire);

-- An on_resolved step held by a guard (pause, target lock) is taken up again by a job.
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('resume_run', 'verify_deadline', 'resume_resolve'));
