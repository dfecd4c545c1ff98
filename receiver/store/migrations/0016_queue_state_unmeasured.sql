-- 0016: the planner keeps no statistics of a queue's state column.
--
-- A queue's states change faster than any ANALYZE: statistics taken before a storm say every
-- event is done, so a pending-only index looks empty and every plan over pending rows looks
-- free. The claim's plans then walked whichever index came first, the lane walk down the
-- due-time index and the expired leases down the queued one, each reading the whole backlog
-- (2,769 rows a step, 2.7 ms a claim three thousand events into a storm with 300,000 stored).
-- Without statistics the planner takes a state as PostgreSQL's default share of a table
-- (0.5 %), neither empty nor everything, and chooses the index by what it gives: the order a
-- walk needs, the columns it compares.
--
-- Statistics that an ANALYZE has already taken stay until the column's type is set again,
-- which drops them (and rebuilds the indexes over state: about a second per million events,
-- with the table locked). Only done where there are any: a new database has none.
ALTER TABLE alert_events ALTER COLUMN state SET STATISTICS 0;
ALTER TABLE jobs ALTER COLUMN state SET STATISTICS 0;
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_stats WHERE schemaname = current_schema()
               AND tablename = 'alert_events' AND attname = 'state') THEN
        ALTER TABLE alert_events ALTER COLUMN state TYPE text;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_stats WHERE schemaname = current_schema()
               AND tablename = 'jobs' AND attname = 'state') THEN
        ALTER TABLE jobs ALTER COLUMN state TYPE text;
    END IF;
END
$$;
