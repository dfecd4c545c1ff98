-- 0036: the engine's history read plans no sort where a plan without one exists.
--
-- Since 0034 the 'recent' part of engine_histories asks for a pair's newest runs in an order
-- (target_name, created_at DESC, id DESC) that only runs_pair_created gives. Another index can
-- still serve it with a sort of what it reads, and on the statistics of an empty table (a new
-- installation, analysed before its first storm) that looked as cheap: every row is estimated
-- at one, and runs_rule_created (rule, created_at DESC), smaller than runs_pair_created (a
-- storm's runs share their group commit's time, which its entries deduplicate), cost 8.19 and
-- a sort of one row against 8.32. The generic plan then read every run of the rule in the
-- window for each pair and sorted them: a batch of eight reads on 1,000 runs over 10 targets
-- read 8,000 rows for its 800 (test_history_flat.py), and each event's read grew with the storm.
--
-- The function now runs with enable_sort off, as it runs with sequential and bitmap scans off
-- (0019): a path with a sort the statement can do without is never taken (PostgreSQL 18
-- compares the count of disabled nodes before the costs; before it, a disabled sort costs
-- 10^10 more, and JIT is off for this function, 0031). The statement's other sorts (its
-- windows' orders, each part's order and limit) are under every plan of it alike, so they
-- choose nothing; their plans are unchanged. receiver.store.history_sql.HISTORY_PLAN_SETTINGS
-- lists it, and tests/integration/test_pinned_plans.py holds the function to it.
ALTER FUNCTION engine_histories(text[], text[], integer[], double precision[], timestamptz[],
                                text[], text[], text[], text[], integer[], integer[],
                                text[], text[], text[], text[], integer[], integer[], bigint[])
    SET enable_sort = off;
