-- 0033: the history read of one event at a time goes (engine_history, 0019 to 0027 and 0031,
-- and the remediator_pairs it called, 0014).
--
-- Since 0030 the engine reads the pasts of a batch in one execution of engine_histories, whose
-- pairs are an inline unnest, not remediator_pairs; nothing in the service calls either
-- function. They were kept through one release so that, during a rolling update from the
-- version before 0030, its replicas, which read each past with engine_history, kept working
-- against a database the new release had migrated. That release has shipped: a rolling update
-- now starts from a release that reads with engine_histories, and a replica older than 0030
-- must not run against this database (update through the release that brought 0030 first).
-- The index 0014 made, runs_pair_created, stays: engine_histories walks it.
--
-- test_history_batch.py's oracle, the read as engine_history ran it, now holds
-- remediator_pairs' query inline (tests/support/old_history.py); bench/history_reads.py, which
-- measures the batched read against engine_history, applies every migration but this one.
DROP FUNCTION engine_history(text, text, integer, double precision, timestamptz,
                             text[], text[], text[], text[], text[], text[], text[], text[],
                             bigint, integer);
DROP FUNCTION remediator_pairs(text[], text[], text[], text[]);
