-- 0021: two fewer index entries for each audit row.
--
-- Every audit row went into four btrees: its id, its run, its time, and its hash (UNIQUE). An
-- audit row is the most written row there is (three an event in a storm, and never pruned), and
-- those inserts were a quarter of the WAL records of a refused event (issue 12).
--
-- The hash's UNIQUE constraint guarded nothing: a row's hash covers its own id, so two rows can
-- share one only by a SHA-256 collision, and nothing looks a row up by its hash (`remediator
-- audit verify` walks the rows by id). Its index was the costliest of the four: 64 random
-- characters a key, each insert on a random leaf page of an index as big as the log.
ALTER TABLE audit_log DROP CONSTRAINT audit_log_hash_key;

-- Times only grow with ids (both are taken under the audit head's lock, migration 0012), so a
-- block range index finds a time range (`remediator audit export --since`) as well as a btree
-- did, for almost nothing per insert. The review's one query by time asks for the service's
-- own rows (a pause, a rules reload: no run), which are few: a partial btree of those keeps
-- that query an index scan however long the log.
--
-- Upgrading: the two indexes are built in the migration's transaction, with audit_log locked,
-- over the whole log (about 3 s per million audit rows on a 2-core machine). Meanwhile every
-- audit append waits, an older replica's included: its worker's writes wait with it (intake
-- does not append audit rows, and goes on storing alerts).
DROP INDEX audit_log_at;
CREATE INDEX audit_log_at ON audit_log USING brin (at) WITH (autosummarize = on);
CREATE INDEX audit_log_service_at ON audit_log (at) WHERE run_id IS NULL;
