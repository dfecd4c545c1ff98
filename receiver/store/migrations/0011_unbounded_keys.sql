-- 0011: the run indexes over values Alertmanager sends with no length limit hold any of them.
--
-- A btree entry holds at most 2704 bytes (after compression), and an index of a value that
-- does not fit fails the INSERT: the worker then fails the alert's event on every attempt
-- until it is dead-lettered. A groupKey is as long as the labels a route groups by (kilobytes,
-- for a long label value), an alertname as long as its sender likes. Intake accepts both (a
-- 4xx loses the notification: Alertmanager does not retry it), so these two indexes key on the
-- value's md5 (32 characters, and IMMUTABLE as an index expression must be) instead. Queries
-- compare the hash, which finds the index, and the value itself, which makes the match exact
-- (receiver/store/paging.py, receiver/store/review.py).
--
-- Every other index on runs, alert_events, approvals, jobs and audit_log is bounded: rule
-- names are DNS-1123 labels, targets are validated names (at most 253 + 63 characters), the
-- fingerprint is 16 hex digits, startsAt an RFC 3339 timestamp, and the rest are ids, times,
-- states and hashes.
DROP INDEX runs_group_created;
CREATE INDEX runs_group_hash_created ON runs (md5(group_key), created_at);

DROP INDEX runs_alertname_created;
CREATE INDEX runs_alertname_hash_created ON runs (md5(alertname), created_at DESC);
