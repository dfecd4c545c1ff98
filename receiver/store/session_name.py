"""What the store's sessions call themselves (``application_name``), so that the session
actions (``postgres.terminate_idle``, ``postgres.cancel_long_queries``) never end them.

Those actions spare every session whose application_name begins with ``alert-remediator``
(``remediations.postgres.connection.APPLICATION_NAME``), the service's own: their SQL skips
the role they connect as, but the store may share the server with the databases they act on
under a role a rule lists (a small setup with one role for all), and ending the store's
sessions, its LISTEN connection (idle for good) first, would cut the service off from its
own queue mid-run. A name PostgreSQL keeps (NAMEDATALEN: 63 bytes) is the only mark a session
of another role shows to them: ``pg_stat_activity`` has no "who opened this".
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from remediations.postgres.connection import APPLICATION_NAME

__all__ = ["store_session_settings"]

# PostgreSQL keeps the first NAMEDATALEN - 1 bytes of an application_name.
_NAME_BYTES = 63


def store_session_settings(dsn: str) -> dict[str, str]:
    """``server_settings`` for a store connection to ``dsn`` (a postgres:// URL): its
    application_name begins with ``alert-remediator``. A name the URL gives
    (``?application_name=replica-b``) is kept after it (``alert-remediator:replica-b``, cut to
    63 bytes on a character's edge), or as it is when it begins so already. asyncpg lets these
    settings win over the URL's."""
    try:
        given = parse_qs(urlsplit(dsn).query).get("application_name", [""])[-1]
    except ValueError:  # asyncpg reports a URL it cannot read, with its own words
        given = ""
    if given.startswith(APPLICATION_NAME):
        name = given
    else:
        name = f"{APPLICATION_NAME}:{given}" if given else APPLICATION_NAME
    return {"application_name": name.encode()[:_NAME_BYTES].decode(errors="ignore")}
