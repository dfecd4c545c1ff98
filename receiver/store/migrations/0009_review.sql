-- 0009: what the post-incident review reads (receiver/review/, receiver/store/review.py).
--
-- Incidents group runs by the alert group's key (Alertmanager's groupKey) and time proximity.
-- The key lives on the event, which retention prunes; the run outlives it, so it keeps its own
-- copy. Runs that exist already take it from their event while it is still stored.
ALTER TABLE runs ADD COLUMN group_key text NOT NULL DEFAULT '';
UPDATE runs r SET group_key = e.group_key
FROM alert_events e WHERE e.id = r.event_id AND e.group_key <> '';

-- The runs of one alert group around a time (an incident's members).
CREATE INDEX runs_group_created ON runs (group_key, created_at);

-- `remediator audit export --since`: the rows from a time on. `at` grows with `id` (both are
-- taken while the audit_head row is locked), so a range on either is the same rows.
CREATE INDEX audit_log_at ON audit_log (at);

