-- 0040: a queued audit row holds its data once, and the seal runs two statements fewer.
--
-- Since 0012 a queued row (audit_pending) carried its data twice: as stored (data) and inside
-- hashed_mid, '"data":<data>,"fingerprint":<fingerprint as JSON>', the middle of the text the
-- seal hashes. A storm's refused event queues one run.created row of about 1.4 kB of JSON: a
-- 2.9 kB queue row, two to a page. The queue is emptied at each commit but vacuumed only every
-- 2,000 dead rows and autovacuum_naptime (a minute by default), so through a storm every page
-- of it is new: an extension of the file (a page of zeros written, a buffer found) for every two
-- events, and the data copied twice into it and read twice out of it at the seal.
--
-- Now a row queued by this version leaves hashed_mid NULL and gives hashed_print, the canonical
-- JSON of its fingerprint alone ('null' for none); the seal writes '"data":' || data ||
-- ',"fingerprint":' || hashed_print, the very text hashed_mid held, so the chain is the same
-- byte for byte (tests/integration/test_audit_seal_identity.py). A row queued by a replica not
-- yet updated (rolling update: its statements name hashed_mid and not hashed_print) is sealed
-- from its hashed_mid as before, in the same transaction as new rows if need be: both forms
-- are sealed alike, one after the other. A row with neither is refused when it is queued, not
-- at its commit.
--
-- And the seal takes the head lock in the statement that reads the queue (the rows come after
-- the lock: a sort over the join waits for both, and the lock, as before, before any id or
-- time is given), and the trigger calls it from an expression instead of a PERFORM (a SELECT
-- through the executor): two statements of five at each commit.
ALTER TABLE audit_pending
    ALTER COLUMN hashed_mid DROP NOT NULL,
    ADD COLUMN hashed_print text,
    ADD CONSTRAINT audit_pending_hashed CHECK (hashed_mid IS NOT NULL OR hashed_print IS NOT NULL);

CREATE OR REPLACE FUNCTION audit_seal_from(first_n bigint) RETURNS bigint
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
    -- The rows from first_n on, in insertion order (the rows before it were sealed already,
    -- or are other transactions', invisible here and deleted before those commit), each with
    -- the head's hash, read under its lock: the sort returns no row before the join has
    -- locked the head (and, having waited for another commit, read its new hash).
    FOR pending IN
        WITH head AS (SELECT last_hash FROM audit_head FOR UPDATE),
             gone AS (DELETE FROM audit_pending WHERE n >= first_n RETURNING *)
        SELECT gone.*, head.last_hash FROM head, gone ORDER BY gone.n
    LOOP
        IF last_n IS NULL THEN
            head_hash := pending.last_hash;
        END IF;
        new_id := nextval('audit_log_id_seq');
        new_at := clock_timestamp();
        prevs := prevs || head_hash;
        head_hash := encode(sha256(convert_to(head_hash || '{"at":"'
            || to_char(new_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')
            || '",' || coalesce(pending.hashed_mid,
                                '"data":' || pending.data || ',"fingerprint":'
                                || pending.hashed_print)
            || ',"id":' || new_id::text || ',' || pending.hashed_end || '}', 'UTF8')), 'hex');
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
DECLARE
    mark text := current_setting('remediator.audit_sealed_to', true);
    me   text := pg_current_xact_id()::text;
BEGIN
    -- The transaction's first unsealed row seals them all; the later rows' triggers return
    -- here (expressions, no statement). The mark is migration 0032's.
    IF mark LIKE me || ':%' AND NEW.n <= split_part(mark, ':', 2)::bigint THEN
        RETURN NULL;
    END IF;
    mark := set_config('remediator.audit_sealed_to',
                       me || ':' || coalesce(audit_seal_from(NEW.n), NEW.n)::text, true);
    RETURN NULL;
END;
$$;
