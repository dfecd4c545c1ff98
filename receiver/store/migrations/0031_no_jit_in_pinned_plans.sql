-- 0031: the functions that pin their plans compile nothing with JIT.
--
-- claim_alert_events (0018) and the history reads (engine_histories, 0030; engine_history, 0019
-- to 0027, still there for a replica of the version before 0030 during a rolling update) run
-- with sequential and bitmap scans off, as the audit seal does. Before PostgreSQL 18 a path
-- that is off is costed 10^10 more, and a generic plan's estimates over a big store are large
-- too, so on a server with JIT (Debian's packages have it; jit_above_cost 100,000 by default) a
-- plan could pass the threshold and be compiled by LLVM at every call: on the seal that was 9 ms
-- of CPU per storm event (migration 0029). These statements read a few rows by index; JIT
-- compilation never pays for them, so it is off for them as it is for the seal.
-- (receiver.store.claims.CLAIM_PLAN_SETTINGS and receiver.store.history_sql.HISTORY_PLAN_SETTINGS
-- list it; tests/integration/test_pinned_plans.py holds the functions to them, and
-- tests/integration/test_audit_seal_jit.py counts what Debian's server compiles.)
ALTER FUNCTION claim_alert_events(text, bigint, double precision, bigint, text, integer)
    SET jit = off;
ALTER FUNCTION engine_histories(text[], text[], integer[], double precision[], timestamptz[],
                                text[], text[], text[], text[], integer[], integer[],
                                text[], text[], text[], text[], integer[], integer[], bigint[])
    SET jit = off;
ALTER FUNCTION engine_history(text, text, integer, double precision, timestamptz,
                              text[], text[], text[], text[], text[], text[], text[], text[],
                              bigint, integer)
    SET jit = off;
