-- 0032: the seal's mark names its transaction.
--
-- Since 0029 a row's trigger takes its row for sealed when its number is at most the setting
-- remediator.audit_sealed_to, which the seal sets for its transaction only. But a value of
-- that setting set for the session (SET, ALTER ROLE or DATABASE ... SET, PGOPTIONS), or left on
-- a server connection by an earlier client of a pooler in transaction mode (PgBouncer keeps a
-- session's SET on the server connection for the next client), is read the same way: every
-- row under it was taken for sealed, and its transaction committed the row into audit_pending,
-- never chained, while `remediator audit verify` said the chain was intact (verify-stop30).
--
-- Now the mark is '<transaction id>:<last row sealed>', and only a mark of the current
-- transaction counts. pg_current_xact_id() is the top-level transaction's id, the same in a
-- savepoint, and a rollback to a savepoint still undoes the mark with the rows it sealed. A
-- value from outside names another transaction (or none), so the row seals as it would
-- without it. (And `remediator audit verify` now also fails on any row committed into
-- audit_pending: a committed transaction leaves none there.)
CREATE OR REPLACE FUNCTION audit_seal() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    mark text := current_setting('remediator.audit_sealed_to', true);
    me   text := pg_current_xact_id()::text;
BEGIN
    -- The transaction's first unsealed row seals them all; the later rows' triggers return
    -- here (expressions, no statement).
    IF mark LIKE me || ':%' AND NEW.n <= split_part(mark, ':', 2)::bigint THEN
        RETURN NULL;
    END IF;
    PERFORM set_config('remediator.audit_sealed_to',
                       me || ':' || coalesce(audit_seal_from(NEW.n), NEW.n)::text, true);
    RETURN NULL;
END;
$$;
