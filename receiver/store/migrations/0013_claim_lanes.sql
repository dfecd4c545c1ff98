-- 0013: the event claim serves alert names in turn (receiver/store/claims.py).
--
-- One lane per alert name, keyed on md5(alertname) as the run indexes of 0011 are (an alert
-- name has no length limit; a btree entry has). Partial over pending rows, so the lane walk and
-- each lane's walk in arrival order cost the same however many finished events are stored.
CREATE INDEX alert_events_pending_lanes ON alert_events (md5(alertname), not_before, id)
    WHERE state = 'pending';
