"""PostgreSQL remediations: ending idle sessions and cancelling long queries, safely.

- ``connection``: ``PostgresConnection``, one named database whose pool opens on first use
- ``sessions``: the session filter both actions share (allow-listed roles and databases, never
  superusers, replication roles, non-client backends or the service's own sessions, a cap)
- ``actions``: ``postgres.terminate_idle`` and ``postgres.cancel_long_queries``
- ``sql/``: the statements, one file each, loaded by name

The role the service connects as needs no superuser: membership in ``pg_signal_backend`` (to
signal other roles' backends) and ``pg_read_all_stats`` (to see their state at all); see the
README. Facts and sources: research/alertmanager-protocol.md section 8.

Nothing is imported here, so importing the package does not load asyncpg.
"""
