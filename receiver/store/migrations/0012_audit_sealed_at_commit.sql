-- 0012: audit rows are chained when their transaction commits, not while it runs.
--
-- Until now an appender locked the single audit_head row, read the last hash, hashed its row in
-- Python and wrote it: two round trips, and the lock held from there until COMMIT, across every
-- statement the transaction still had to send. Under a storm the worker's event loop is busy, so
-- the lock holder was slow to send them, and every other worker waited on the head row (17 s of
-- a 22 s drain; issue 12).
--
-- Now an appender inserts its row into audit_pending (no lock, one statement), with the canonical
-- JSON of what is hashed already built by the application (receiver/store/audit.py). A deferred
-- constraint trigger seals each pending row at COMMIT, in insertion order: it takes the
-- audit_head lock, gives the row its id and time, hashes it exactly as before
--   hash = sha256(prev_hash || canonical JSON of {at, data, fingerprint, id, kind, run_id})
-- (the application built every part of that JSON but the id and the time, which are formatted
-- here as Python's json.dumps and datetime.isoformat(timespec="microseconds") write them), moves
-- it to audit_log and drops the pending row. The head lock is then held only while the
-- committing transaction seals its rows and flushes its commit record: server-side work, no
-- round trip to a busy client. The chain is as linear and as verifiable as before: ids and
-- times are still taken under the lock, so id order is chain order and `at` grows with `id`,
-- and `remediator audit verify` recomputes the same hashes. A transaction that rolls back
-- leaves nothing, pending or sealed.
CREATE TABLE audit_pending (
    n           bigserial PRIMARY KEY,
    kind        text NOT NULL,
    run_id      uuid,
    fingerprint text,
    data        text NOT NULL,  -- canonical JSON of the data, as hashed and as stored (jsonb)
    hashed_mid  text NOT NULL,  -- '"data":…,"fingerprint":…' as hashed
    hashed_end  text NOT NULL   -- '"kind":…,"run_id":…' as hashed
);

-- Row-level (a constraint trigger is), but the first row of a transaction seals them all: the
-- only rows of audit_pending a committing transaction can see are its own (another's stay
-- invisible until it commits, and it cannot commit before sealing and deleting its own, which
-- waits for this one's lock), so one lock, one head update and one delete per transaction
-- instead of per row; the later rows' triggers find their row gone and return at once.
CREATE FUNCTION audit_seal() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head_hash text;
    new_id    bigint;
    new_at    timestamptz;
    content   text;
    pending   record;
    sealed    bigint[] := '{}';
BEGIN
    PERFORM 1 FROM audit_pending WHERE n = NEW.n;
    IF NOT FOUND THEN
        RETURN NULL;  -- sealed with the transaction's first row
    END IF;
    SELECT last_hash INTO head_hash FROM audit_head FOR UPDATE;
    -- From this row on, in insertion order (the rows before it were sealed already, or are
    -- other transactions' and deleted).
    FOR pending IN SELECT * FROM audit_pending WHERE n >= NEW.n ORDER BY n LOOP
        new_id := nextval('audit_log_id_seq');
        new_at := clock_timestamp();
        content := '{"at":"'
            || to_char(new_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
            || '",' || pending.hashed_mid || ',"id":' || new_id::text || ','
            || pending.hashed_end || '}';
        INSERT INTO audit_log (id, at, kind, run_id, fingerprint, data, prev_hash, hash)
        VALUES (new_id, new_at, pending.kind, pending.run_id, pending.fingerprint,
                pending.data::jsonb, head_hash,
                encode(sha256(convert_to(head_hash || content, 'UTF8')), 'hex'))
        RETURNING hash INTO head_hash;
        sealed := sealed || pending.n;
    END LOOP;
    UPDATE audit_head SET last_id = new_id, last_hash = head_hash;
    DELETE FROM audit_pending WHERE n = ANY (sealed);
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER audit_pending_seal
    AFTER INSERT ON audit_pending
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION audit_seal();

-- Every row is deleted at the commit that inserted it: vacuum it often, as the queues are.
ALTER TABLE audit_pending SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_cost_delay = 0
);
