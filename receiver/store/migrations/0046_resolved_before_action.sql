-- 0046: a run's verification may end `resolved_before_action`.
--
-- The alert's resolution was dated before the run's first step acted (the earliest started_at
-- of its run-phase steps, else the run's own started_at): the alert ended by itself while its
-- firing waited in the queue, and the steps cannot have fixed it. Such a run ends `succeeded`
-- (its steps did what they were asked) with this result, and the rule is not credited with a
-- fix (receiver.store.verification). Only a value is added, so the function of 0044 is
-- replaced: rows already stored held one of the three older values and need no new check.
CREATE OR REPLACE FUNCTION runs_verify_result_known(verify_result text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
BEGIN
    RETURN verify_result = ANY ('{verified, not_resolved, recurred, resolved_before_action}'::text[]);
END;
$$;
