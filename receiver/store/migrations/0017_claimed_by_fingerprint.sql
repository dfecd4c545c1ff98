-- 0017: the head of an alert's queue is found with two index probes, not a sort of the queue.
--
-- Only the head of an alert's queue may be claimed: the event in progress if there is one (a
-- retried dead event is older than it and must wait), else the oldest queued
-- (receiver/store/claims.py). It was read as the first of every queued event of the alert,
-- sorted with the claimed one first: the whole queue, for each event the claim walked past.
-- An alert that flapped while no worker ran, 3,000 episodes queued, made one claim read
-- 9,003,005 rows (2 s). The claimed event of an alert now comes from this index (claimed rows
-- are few: one an alert at most, while it is worked on), the oldest queued one from
-- alert_events_queued_by_fingerprint (migration 0005), each the first entry of an index.
CREATE INDEX alert_events_claimed_by_fingerprint ON alert_events (fingerprint, id)
    WHERE state = 'claimed';
