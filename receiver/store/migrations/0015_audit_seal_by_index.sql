-- 0015: the audit seal (migration 0012) reads its transaction's pending rows down the primary
-- key, never by a scan of the whole table.
--
-- audit_pending is a queue: every sealed row is deleted at once, so it holds a few live rows
-- and up to the autovacuum threshold (2,000) of dead ones. Its statistics call it tiny, and the
-- cached plan of "the rows from NEW.n on" was a sequential scan, which reads the dead rows too:
-- up to 3 ms in a storm, with the audit head locked (every other appender waits meanwhile).
-- With sequential scans off for the function's statements, the rows come by the primary key.
-- audit_head's one row has no index and is still read by a scan.
ALTER FUNCTION audit_seal() SET enable_seqscan = off;
