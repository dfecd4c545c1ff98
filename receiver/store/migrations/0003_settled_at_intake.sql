-- 0003: events that intake settles without the worker (a firing alert no rule matches) are stored
-- already done, with the reason here. They still count for dedupe and review, and never enter
-- the claim indexes (state is 'done' from the start, so the partial indexes skip them).
ALTER TABLE alert_events ADD COLUMN settled_reason text;
