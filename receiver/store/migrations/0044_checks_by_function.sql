-- 0044: the lists of allowed values that runs and steps check, held in functions.
--
-- PostgreSQL reads a table's CHECK constraints afresh for every statement that writes the table:
-- at its first row it parses each stored expression back from text (pg_constraint.conbin) and
-- plans it again, however often the statement ran before. `outcome IN (<12 values>)` is stored
-- as twelve constants, each printed byte by byte: 2.5 kB of text to parse, and an array to build,
-- for every run created, and again for steps' `phase` (0.9 kB) and runs' `verify_result`
-- (1.0 kB). A profile of a storm's run creation (one statement: the run, its steps, its audit
-- row) put 7 to 8 per cent of PostgreSQL's CPU for it there, more than the checks' evaluation
-- and the runs row's own insert.
--
-- Now each list is the body of a PL/pgSQL function and the constraint, of the same name, calls
-- it: the stored expression is one call (a few hundred bytes), the function compiled once per
-- session, its statement planned once. Same values, same result: STRICT returns NULL for a NULL
-- column without calling, which passes a CHECK as `NULL IN (...)` did; a value outside the list
-- fails with the same constraint name. Not LANGUAGE sql: PostgreSQL would inline the body into
-- every statement and parse it each time. A later migration that allows a new value replaces the
-- function (CREATE OR REPLACE: rows already stored are not checked again, which adding a value
-- needs no more than before); one that removes a value drops and adds the constraint, as 0008
-- did, so that the stored rows are checked.
CREATE FUNCTION runs_outcome_known(outcome text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN outcome = ANY ('{pending, running, awaiting_approval, verifying, verified, succeeded,
                            dry_run, refused, failed, rejected, expired, cancelled}'::text[]);
END;
$$;

CREATE FUNCTION runs_verify_result_known(verify_result text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN verify_result = ANY ('{verified, not_resolved, recurred}'::text[]);
END;
$$;

CREATE FUNCTION steps_phase_known(phase text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN phase = ANY ('{run, resolve, on_failed}'::text[]);
END;
$$;

-- Checked against the stored rows as they are added (one scan of each table, under the lock the
-- migration takes): they held the same lists.
ALTER TABLE runs
    DROP CONSTRAINT runs_outcome_check,
    ADD CONSTRAINT runs_outcome_check CHECK (runs_outcome_known(outcome)),
    DROP CONSTRAINT runs_verify_result_check,
    ADD CONSTRAINT runs_verify_result_check CHECK (runs_verify_result_known(verify_result));

ALTER TABLE steps
    DROP CONSTRAINT steps_phase_check,
    ADD CONSTRAINT steps_phase_check CHECK (steps_phase_known(phase));
