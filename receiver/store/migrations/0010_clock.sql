-- 0010: one clock for the store's SQL. Every "now" the store writes or compares (received_at,
-- created_at, leases, not_before, history windows, the re-fire window, verify deadlines,
-- approval expiry) is remediator_now(): the transaction's now(), unless the session set
-- `remediator.clock` to a timestamp. Only `remediator test` sets it, to play a rule test's
-- timeline on a simulated clock (receiver/ruletest/); the service never does.
--
-- A STABLE SQL function of one expression: the planner inlines it, so the hot paths pay one
-- lookup of an unset setting (current_setting(..., true) is NULL until a session sets it; ''
-- after a RESET, hence nullif).
CREATE FUNCTION remediator_now() RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT coalesce(nullif(current_setting('remediator.clock', true), '')::timestamptz, now()) $$;

ALTER TABLE alert_events ALTER COLUMN received_at SET DEFAULT remediator_now();
ALTER TABLE alert_events ALTER COLUMN not_before SET DEFAULT remediator_now();
ALTER TABLE runs ALTER COLUMN created_at SET DEFAULT remediator_now();
ALTER TABLE jobs ALTER COLUMN not_before SET DEFAULT remediator_now();
ALTER TABLE jobs ALTER COLUMN created_at SET DEFAULT remediator_now();
ALTER TABLE approvals ALTER COLUMN requested_at SET DEFAULT remediator_now();
