-- 0022: audit rows that are appended at most once, whoever tries and however often.
--
-- A pause or resume made while PostgreSQL was away is queued in Redis with a unique id
-- (receiver/audit_outbox.py) and written to the audit log once the store is back, by whichever
-- replica drains the queue first; it is removed from the queue only after its row committed,
-- so a drainer that dies in between, a retry, or a second replica may try the same id again.
-- The first appender inserts the id here in the transaction that appends its audit row; the
-- others find it (INSERT ... ON CONFLICT DO NOTHING, which waits for a transaction that holds
-- the same id still uncommitted) and append nothing. A direct write that was given up at the
-- routes' deadline but committed later holds its id here too, so the queued copy is skipped.
--
-- Outside the chain on purpose: the audit row carries the id in its data (hashed with it);
-- this table only says that one was written. A few rows a pause, never pruned.
CREATE TABLE audit_once (
    key         text        PRIMARY KEY,
    recorded_at timestamptz NOT NULL DEFAULT remediator_now()
);
