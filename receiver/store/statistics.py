"""Planner statistics kept in step with a storm (``receiver.store.upkeep.keep_statistics`` runs
``refresh_statistics`` every ``CHECK_EVERY_S``): the tables whose rows changed by more than
they held when last analysed are analysed again, without waiting for autovacuum.

Why: PostgreSQL plans a statement on the statistics it has, and keeps the plan (every cached
statement of every connection, and the checks of foreign keys, which the server plans once per
connection) until the table is analysed again. Statistics taken while a table was empty or
small (a new installation; a quiet hour) make a sequential scan of its one page look cheapest,
and that plan stays while a storm fills the table. Autovacuum analyses a table at most once per
``autovacuum_naptime`` (a minute by default), so a storm on a young database ran its first
minute on such plans: each step written checked its run by scanning ``runs`` from end to end
(89 million rows read for 10,000 events in a probe; the drain took twice as long). The plans
that matter most are pinned (the claim, migration 0018; the engine's history read, 0019; the
audit seal, 0015); this covers the rest, which nobody can pin: the foreign-key checks above
all.

The rule (``stale``) is autovacuum's own with another threshold: a table is analysed when the
rows inserted, updated or deleted since its last analysis (``n_mod_since_analyze``) are at
least ``MIN_CHANGES`` and at least ``CHANGE_RATIO`` times the rows it had then (``reltuples``,
-1 when never analysed): a table that grew from nothing, or doubled. A storm on a big store (a
million events) changes a few per cent and is left to autovacuum. ``ANALYZE (SKIP_LOCKED)``
gives way to an autovacuum or another replica at work on the table, and analysing takes no
lock that writers or readers wait for. A table this role may not analyse (it neither owns it
nor the database) is not watched: the server would skip it with a warning, every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from receiver.store.database import Database
from receiver.store.errors import translate

__all__ = [
    "CHANGE_RATIO",
    "CHECK_EVERY_S",
    "MIN_CHANGES",
    "WATCHED_TABLES",
    "Statistics",
    "TableChanges",
    "stale",
]

# The tables whose plans the worker and intake depend on. Not audit_pending: a queue emptied at
# every commit, whose statistics say nothing; its one reader is pinned (migration 0015).
WATCHED_TABLES = ("alert_events", "runs", "steps", "jobs", "approvals", "audit_log")

# Fewer changes than this never call for an analysis: plans on a table of a few hundred rows
# cost little whichever they are.
MIN_CHANGES = 1000

# How often the counts are read (seconds): one cheap query of the server's own counters. A storm
# queues thousands of events a second; this finds a table grown from nothing within seconds.
CHECK_EVERY_S = 2.0


# Changes since the last analysis, as a multiple of the rows the table had then, from which
# the statistics are out of date: the table has at least doubled (or emptied).
CHANGE_RATIO = 1.0


# The watched tables as the store's statements name them (unqualified, so found on the
# search_path: ``to_regclass``, whatever the schema is called; a cast of ``current_schema()``
# to regnamespace parsed the name as SQL, so a schema such as "Alerts" or "alert-store" was
# not found or an error), and only those this role may analyse: their owner's privileges or
# the database owner's (superusers have both). The server skips any other with a WARNING in
# its log and leaves its counts as they were, so it would be analysed again, in vain, every
# ``CHECK_EVERY_S`` (PostgreSQL 17's MAINTAIN privilege alone is not looked at: such a table
# is left to autovacuum).
_CHANGES_SQL = """
SELECT c.relname, c.reltuples, s.n_mod_since_analyze
FROM unnest($1::text[]) AS watched (name)
JOIN pg_class c ON c.oid = to_regclass(quote_ident(watched.name))
JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE pg_has_role(c.relowner, 'USAGE')
   OR pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE')
"""


@dataclass(frozen=True, slots=True)
class TableChanges:
    """One table as the server counts it: ``rows`` when last analysed (``reltuples``, -1 when
    never) and ``changed`` rows since (``n_mod_since_analyze``)."""

    table: str
    rows: float
    changed: int


def stale(table: TableChanges) -> bool:
    """Whether ``table``'s statistics are out of date enough to analyse it now."""
    return table.changed >= MIN_CHANGES and table.changed >= CHANGE_RATIO * max(table.rows, 0.0)


class Statistics(Database):
    """``refresh_statistics()``: analyse the watched tables whose statistics are stale."""

    async def table_changes(self) -> list[TableChanges]:
        """The watched tables on the store's search_path that this role may analyse, as the
        server counts them."""
        with translate():
            rows = await self._pool.fetch(_CHANGES_SQL, list(WATCHED_TABLES))
        return [
            TableChanges(r["relname"], float(r["reltuples"]), int(r["n_mod_since_analyze"]))
            for r in rows
        ]

    async def refresh_statistics(self) -> Sequence[str]:
        """Analyse each watched table whose statistics are stale (``stale``); the tables
        analysed. StoreUnavailable when the store is out of reach."""
        analysed: list[str] = []
        for table in await self.table_changes():
            if not stale(table):
                continue
            with translate():
                # The name comes from WATCHED_TABLES, matched by the server: quoted all the same.
                await self._pool.execute(f'ANALYZE (SKIP_LOCKED) "{table.table}"')
            analysed.append(table.table)
        return analysed
