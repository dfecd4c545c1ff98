-- alert_events is a queue: every event is updated pending -> claimed -> done, which leaves dead
-- tuples at the head of the claim indexes. The default autovacuum trigger (20% of the table)
-- is reached ever more rarely as history grows; vacuum and analyze it by a fixed amount of
-- churn instead, so claims keep walking a short index and the planner keeps fresh counts.
ALTER TABLE alert_events SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 2000
);
