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

CREATE FUNCTION audit_seal() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    head_hash text;
    new_id    bigint;
    new_at    timestamptz;
    content   text;
    digest    text;
BEGIN
    SELECT last_hash INTO head_hash FROM audit_head FOR UPDATE;
    new_id := nextval('audit_log_id_seq');
    new_at := clock_timestamp();
    content := '{"at":"'
        || to_char(new_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
        || '",' || NEW.hashed_mid || ',"id":' || new_id::text || ',' || NEW.hashed_end || '}';
    digest := encode(sha256(convert_to(head_hash || content, 'UTF8')), 'hex');
    INSERT INTO audit_log (id, at, kind, run_id, fingerprint, data, prev_hash, hash)
    VALUES (new_id, new_at, NEW.kind, NEW.run_id, NEW.fingerprint, NEW.data::jsonb, head_hash,
            digest);
    UPDATE audit_head SET last_id = new_id, last_hash = digest;
    DELETE FROM audit_pending WHERE n = NEW.n;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER audit_pending_seal
    AFTER INSERT ON audit_pending
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION audit_seal();
