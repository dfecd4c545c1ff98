"""What ``serve`` and the commands that take a database URL say of one that fails: alike, and
never its password (``receiver.config.redact``)."""

from __future__ import annotations

from urllib.parse import urlsplit

from receiver.config import ConfigError
from receiver.config.redact import redacted, unreadable
from receiver.store import describe

__all__ = ["SESSION_ATTRS", "not_a_dsn", "refused", "where"]

# The values of ``target_session_attrs`` (libpq's list, "Parameter Key Words" in the
# PostgreSQL manual; asyncpg's ``SessionAttribute`` takes the same). asyncpg's own error names
# them by a method's repr ("one of <built-in method values of mappingproxy object at 0x...>"),
# which tells nobody what to write.
SESSION_ATTRS = ("any", "read-write", "read-only", "primary", "standby", "prefer-standby")


def not_a_dsn(source: str, dsn: str, exc: Exception) -> ConfigError:
    """The error for ``dsn``, which asyncpg cannot read (``exc``), from ``source`` (the
    variable or option that gave it): what is wrong, never its password (``config.redact``).
    ``serve`` and the commands that take a database URL say it alike."""
    return ConfigError(f"{source}: {unreadable('PostgreSQL', dsn, _said_plainly(exc))}")


def _said_plainly(exc: Exception) -> Exception:
    """``exc``, or an error that says the same where asyncpg's words do not (above)."""
    text = str(exc)
    if text.startswith("target_session_attrs is expected to be one of <"):
        got = text.rpartition(", got ")[2]
        return ValueError(
            f"target_session_attrs must be one of {', '.join(SESSION_ATTRS)}; got {got}"
        )
    return exc


def where(url: str) -> str:
    """Where ``url`` points: its host and database, never its user or password."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2] or "the local socket"
    return f"{host}{parts.path}"


def refused(source: str, dsn: str, exc: Exception) -> str:
    """What PostgreSQL at ``dsn`` (from ``source``) refused (``exc``): where, the error's class
    and SQLSTATE (``describe``) and its text, never the password. ``serve`` and the commands
    that take a database URL say it alike."""
    return (
        f"{source}: PostgreSQL at {where(dsn)} refused: {redacted(f'{describe(exc)}: {exc}', dsn)}"
    )
