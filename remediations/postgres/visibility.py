"""What the connection can see of the allow-listed roles, checked before either session action
(``sessions.py``) reads ``pg_stat_activity``.

Ways a step would otherwise mislead, hiding a fault the rule's author must fix:

- the connecting role cannot see the roles' sessions: without ``pg_read_all_stats`` (or the
  privileges of those roles) ``pg_stat_activity`` shows another role's sessions with a NULL
  state and query (PostgreSQL docs, "The Cumulative Statistics System", pg_stat_activity;
  research section 8.1). Refused, naming the grant (it would record ``noop`` "no session
  matches" for ever);
- it can see them but not signal them: without ``pg_signal_backend`` (or the privileges of
  those roles) ``pg_terminate_backend`` and ``pg_cancel_backend`` raise "permission denied"
  (research section 8.1), so a preview and a dry run listed sessions the run could not end,
  and the run failed as one that may have signalled some. Refused before any signal, naming
  the grant;
- no allow-listed role exists on the server (a typo, or the connection names another server),
  or each that does is one whose sessions the actions never signal (a superuser, a replication
  role, the role the connection logs in as: an application run as ``postgres``) or a group
  role (NOLOGIN: its members' sessions are theirs). Refused, naming them (it would record
  ``noop`` for ever). When only some are so, the step goes on and a "no session matches" names
  them. So with the databases a rule lists: none of them exists,
  refused; some, named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from remediations.base import ActionRefused
from remediations.postgres.connection import PostgresConnection

__all__ = ["RolesSeen", "roles_note", "roles_seen"]

# Whether this connection can see the state of the allow-listed roles' sessions ($1), and
# signal them: it can when it has the privileges of pg_read_all_stats (of pg_signal_backend;
# a superuser has every privilege), and for a role whose privileges it has (pg_signal_backend()
# in PostgreSQL's signalfuncs.c: has_privs_of_role, which 'USAGE' asks). Roles that do not
# exist have no session to hide, and are listed; so are the roles whose sessions the actions'
# SQL never signals (sql/*.sql: a superuser, a replication role, the role it connects as) and
# a role that cannot log in (a group role: its members' sessions are theirs, not its) and has
# no session left from before, each with why (``barred``, ``why`` NULL for the others): they
# need no grant.
_VISIBILITY = """
WITH listed AS (
    SELECT r.oid, r.rolname::text AS name,
           CASE WHEN r.rolname = current_user THEN 'the role it connects as'
                WHEN r.rolsuper THEN 'a superuser'
                WHEN r.rolreplication THEN 'a replication role'
                WHEN NOT r.rolcanlogin
                     AND NOT EXISTS (SELECT FROM pg_stat_activity a WHERE a.usesysid = r.oid)
                THEN 'a role that cannot log in'
           END AS why
    FROM pg_roles r
    WHERE r.rolname = ANY ($1::text[])
)
SELECT pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS all_stats,
       pg_has_role(current_user, 'pg_signal_backend', 'USAGE') AS signal_any,
       current_user::text AS me,
       array(SELECT l.name FROM listed l
             WHERE l.why IS NULL AND NOT pg_has_role(current_user, l.oid, 'USAGE')
             ORDER BY l.name COLLATE "C") AS hidden,
       array(SELECT l.name || ' (' || l.why || ')' FROM listed l
             WHERE l.why IS NOT NULL
             ORDER BY l.name COLLATE "C") AS barred,
       array(SELECT w.name FROM unnest($1::text[]) AS w(name)
             WHERE NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = w.name)) AS missing,
       array(SELECT w.name FROM unnest($2::text[]) AS w(name)
             WHERE NOT EXISTS (SELECT FROM pg_database d WHERE d.datname = w.name))
         AS missing_databases
"""


@dataclass(frozen=True, slots=True)
class RolesSeen:
    """The allow-listed roles and databases no session of which could match, in code point
    order (usually none): ``missing``, the server has no such role; ``barred``, each as
    ``name (why)``, no session of it is ever signalled; ``missing_databases``, the server
    has no such database."""

    missing: list[str]
    barred: list[str]
    missing_databases: list[str] = field(default_factory=list)


async def roles_seen(
    conn: PostgresConnection, action: str, roles: Sequence[str], databases: Sequence[str] = ()
) -> RolesSeen:
    """Which allow-listed ``roles`` and ``databases`` (empty: the connection's) no session
    could ever match (``RolesSeen``).

    Raises ActionRefused naming the missing grant when the connection cannot see the state of
    some other listed role's sessions or cannot signal them, and naming the roles when none of
    them could ever match (none exists, or each is ``barred``), or when
    none of the databases exists."""
    (row,) = await conn.fetch(f"{action}: visibility", _VISIBILITY, list(roles), list(databases))
    hidden = list(row["hidden"] or [])
    missing = sorted(str(name) for name in row["missing"] or [])
    barred = [str(name) for name in row["barred"] or []]
    if hidden and not row["all_stats"]:
        raise ActionRefused(
            f"PostgreSQL {conn.name!r}: the role {row['me']} cannot see the sessions of "
            f"{', '.join(hidden)}: it lacks pg_read_all_stats, without which pg_stat_activity "
            "shows other roles' sessions with no state, so none would ever match; "
            f"GRANT pg_read_all_stats TO {row['me']} (see the README)"
        )
    if hidden and not row["signal_any"]:
        raise ActionRefused(
            f"PostgreSQL {conn.name!r}: the role {row['me']} cannot signal the sessions of "
            f"{', '.join(hidden)}: it lacks pg_signal_backend, without which the server refuses "
            "to end or cancel other roles' sessions; nothing was signalled; "
            f"GRANT pg_signal_backend TO {row['me']} (see the README)"
        )
    if missing and len(missing) == len(set(roles)):
        raise ActionRefused(
            f"PostgreSQL {conn.name!r} has no role {', '.join(missing)}: no session could ever "
            "match; check the rule's roles (a typo?) and that its connection names the right "
            "server"
        )
    if barred and len(missing) + len(barred) == len(set(roles)):
        raise ActionRefused(
            f"PostgreSQL {conn.name!r}: no session of {', '.join(barred)} could ever match: "
            "these actions never signal a superuser's, a replication role's or their own "
            "role's sessions, and a role that cannot log in has none; list the roles the "
            "applications log in as (see the README)" + roles_note(RolesSeen(missing, []))
        )
    missing_databases = sorted(str(name) for name in row["missing_databases"] or [])
    if missing_databases and len(missing_databases) == len(set(databases)):
        raise ActionRefused(
            f"PostgreSQL {conn.name!r} has no database {', '.join(missing_databases)}: no "
            "session could ever match; check the rule's databases (a typo?) and that its "
            "connection names the right server"
        )
    return RolesSeen(missing, barred, missing_databases)


def roles_note(seen: RolesSeen) -> str:
    """The words a "no session matches" message ends with when some listed roles could never
    match: `` (no role x on this server; never signalled: postgres (a superuser))``."""
    notes = []
    if seen.missing:
        notes.append(f"no role {', '.join(seen.missing)} on this server")
    if seen.missing_databases:
        notes.append(f"no database {', '.join(seen.missing_databases)} on this server")
    if seen.barred:
        notes.append(f"never signalled: {', '.join(seen.barred)}")
    return f" ({'; '.join(notes)})" if notes else ""
