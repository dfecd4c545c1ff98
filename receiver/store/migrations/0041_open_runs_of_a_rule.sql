-- 0041: the open runs of a rule a reload removed, read without its finished runs.
--
-- A rules reload that removes (or renames) a rule names the runs of it left open
-- (EngineHistory.open_runs: not resolved, and not ended without acting). The read walked every
-- run of the rule whose alert had not resolved and filtered out the refused, dry-run, rejected,
-- expired and cancelled ones: a storm's refused runs of an alert silenced for good (whose
-- resolution never comes) are never resolved, and were read, all of them, on every such
-- reload (a sequential scan, or runs_fingerprint_open, which holds every open run of every
-- rule). This index holds exactly the rows the read returns, in its order.
--
-- Its cost on the write path: one entry for a run created to act (pending, verifying, ...), none
-- for a run stored refused or dry-run (most runs of a storm). It names no column that an update
-- changes but outcome and resolved_at, which runs_verifying and runs_fingerprint_open name
-- already: no update that was HOT stops being so.
CREATE INDEX runs_rule_open ON runs (rule, created_at, id)
    WHERE resolved_at IS NULL
      AND outcome NOT IN ('refused', 'dry_run', 'rejected', 'expired', 'cancelled');
