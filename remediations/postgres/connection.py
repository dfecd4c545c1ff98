"""One named PostgreSQL database the actions may act on, reached through a small asyncpg pool.

The pool opens on first use, so a configured database that no step ever needs costs no
connection; ``close()`` closes it. Every session the service opens is read-only
(``default_transaction_read_only``: the remediator signals backends, it never writes data),
carries ``application_name = alert-remediator`` and a statement timeout.

Reads are retried on transient failures (refused or dropped connections, a server starting or
shutting down, too many connections). A statement that signals backends is sent once: if its
answer is lost, which sessions were signalled is unknown, and sending it again could go past
the step's cap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from remediations.base import ActionError, ActionRefused, TransientActionError
from remediations.retrying import (
    DEFAULT_RETRY,
    RetryPolicy,
    call_with_retries,
    describe_exception,
)
from remediations.tls import tls_words

__all__ = ["APPLICATION_NAME", "PostgresConnection", "is_transient"]

APPLICATION_NAME = "alert-remediator"

T = TypeVar("T")

# SQLSTATE classes 08 (connection exception) and 57P (operator intervention: admin shutdown,
# crash shutdown, cannot connect now), and 53300 (too many connections): the server may take
# the same request a moment later.
_TRANSIENT_SQLSTATES = ("08", "57P", "53300")


def is_transient(exc: BaseException) -> bool:
    """Whether the same request may succeed if sent again: connection-level failures only."""
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state.startswith(_TRANSIENT_SQLSTATES)
    if isinstance(exc, asyncpg.exceptions.ClientConfigurationError):
        # The DSN asks for what this client cannot do (sslmode=verify-full without a root
        # certificate file): the same on every try, an InterfaceError all the same.
        return False
    return isinstance(
        exc,
        OSError
        | asyncio.TimeoutError
        | asyncpg.exceptions.ConnectionDoesNotExistError
        | asyncpg.exceptions.InterfaceError,
    )


def _statement_error(
    name: str, what: str, exc: asyncpg.PostgresError, *, acting: bool
) -> ActionError:
    """The operator's words for a statement the server refused or cancelled: not a bug of the
    action (it was logged as "action crashed", with a traceback), but a failure to act on.
    ``acting``: the statement signals, so some sessions may have been signalled before it
    stopped (PostgreSQL's signalling functions act as the statement reads each row)."""
    if isinstance(exc, asyncpg.QueryCanceledError):
        why = "the statement was cancelled (it ran past the connection's statement timeout, or "
        why += "an operator cancelled it)"
    else:
        why = f"the server refused the statement ({_describe(exc)})"
    if acting:
        return ActionError(
            f"PostgreSQL {name!r}: {what}: {why}; some sessions may have been signalled before "
            "it stopped, check pg_stat_activity",
            may_have_acted=True,
        )
    return ActionError(
        f"PostgreSQL {name!r}: {what}: {why}; nothing was signalled", may_have_acted=False
    )


def _describe(exc: BaseException, name: str = "") -> str:
    """One line naming ``exc``; a TLS failure (a refused certificate) in words, with the DSN's
    setting that fixes it (remediations/tls.py) for the database ``name``."""
    tls = tls_words(exc, f"the DSN's sslrootcert ({_dsn_setting(name)})")
    if tls is not None:
        return tls
    if isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        return f"{type(exc).__name__} (SQLSTATE {state}): {exc}"
    return describe_exception(exc)


def _dsn_setting(name: str) -> str:
    return f"postgres.databases.{name}.dsn_file"


class PostgresConnection:
    """The ``Clients`` value under ``"postgres:<name>"``: a DSN and a pool opened on demand.

    ``dsn`` is a libpq URL or key/value string (it holds the password: it is never logged,
    and ``repr()`` shows the name only). ``statement_timeout_s`` bounds every statement on
    the server; ``policy.request_timeout`` bounds connecting and each call on the client.
    """

    def __init__(
        self,
        name: str,
        dsn: str,
        *,
        statement_timeout_s: float = 10.0,
        max_size: int = 2,
        policy: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self.name = name
        self._dsn = dsn
        self._statement_timeout_ms = max(1, round(statement_timeout_s * 1000))
        self._max_size = max_size
        self.policy = policy
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"PostgresConnection({self.name!r})"

    @property
    def opened(self) -> bool:
        """Whether the pool has been opened (by a step, or by ``check()``)."""
        return self._pool is not None

    async def _open(self) -> asyncpg.Pool:
        async with self._lock:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._max_size,
                    timeout=self.policy.request_timeout,
                    command_timeout=self.policy.request_timeout,
                    server_settings={
                        "application_name": APPLICATION_NAME,
                        "statement_timeout": str(self._statement_timeout_ms),
                        "default_transaction_read_only": "on",
                    },
                )
            return self._pool

    async def _retrying(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call_with_retries(
                fn,
                what=f"PostgreSQL {self.name!r}: {what}",
                attempts=self.policy.attempts,
                wait=self.policy.backoff(),
                transient=is_transient,
                describe=lambda exc: _describe(exc, self.name),
                # Reads and connects only (fetch_once sends its acting statement itself).
                may_have_acted=False,
            )
        except asyncpg.InsufficientPrivilegeError as exc:
            raise ActionRefused(
                f"PostgreSQL {self.name!r}: {what}: permission denied ({exc}); see the README "
                "for the role's grants"
            ) from exc
        except asyncpg.InvalidAuthorizationSpecificationError as exc:
            raise ActionRefused(f"PostgreSQL {self.name!r}: cannot log in: {exc}") from exc
        except asyncpg.exceptions.ClientConfigurationError as exc:
            # Before connecting: nothing sent. Its first line names the file it missed.
            raise ActionRefused(
                f"PostgreSQL {self.name!r}: {what}: the DSN asks for what this client cannot do"
                f" ({str(exc).splitlines()[0]}): fix {_dsn_setting(self.name)}"
            ) from exc
        except asyncpg.PostgresError as exc:
            # Not transient: retries that ran out are a TransientActionError already.
            raise _statement_error(self.name, what, exc, acting=False) from exc

    async def fetch(self, what: str, sql: str, *args: Any) -> Sequence[asyncpg.Record]:
        """Rows of a statement that changes nothing, retried on transient failures. Raises
        TransientActionError when the retries run out, ActionRefused on a permission or login
        error, and ActionError (nothing signalled) on any other error the server raises."""

        async def attempt() -> Sequence[asyncpg.Record]:
            pool = await self._open()
            async with pool.acquire() as conn:
                rows: Sequence[asyncpg.Record] = await conn.fetch(sql, *args)
                return rows

        return await self._retrying(what, attempt)

    async def fetch_once(self, what: str, sql: str, *args: Any) -> Sequence[asyncpg.Record]:
        """Rows of a statement that acts (signals backends): connecting is retried, the
        statement is sent once. A failure to connect has not acted (``may_have_acted`` False);
        a lost answer raises TransientActionError saying so, and a permission error part way
        ActionRefused, both ``may_have_acted``: some sessions may have been signalled. So does
        any other error the server raises (a statement timeout, say): an ActionError that
        may have acted. Any other exception propagates as it is (the step runner takes it as
        one that may have acted)."""

        async def connect() -> Any:
            pool = await self._open()
            return await pool.acquire()

        conn = await self._retrying("connect", connect)
        pool = await self._open()
        try:
            rows: Sequence[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows
        except asyncpg.InsufficientPrivilegeError as exc:
            raise ActionRefused(
                f"PostgreSQL {self.name!r}: {what}: permission denied ({exc}); some sessions "
                "may have been signalled before it; see the README for the role's grants",
                may_have_acted=True,
            ) from exc
        except Exception as exc:
            if is_transient(exc):
                raise TransientActionError(
                    f"PostgreSQL {self.name!r}: {what}: the connection failed while the "
                    f"statement ran ({_describe(exc)}); which sessions were signalled is "
                    "unknown, check pg_stat_activity",
                    may_have_acted=True,
                ) from exc
            if isinstance(exc, asyncpg.PostgresError):
                raise _statement_error(self.name, what, exc, acting=True) from exc
            raise
        finally:
            await pool.release(conn)

    async def check(self) -> None:
        """Open the pool if needed and run ``SELECT 1``; raises like ``fetch``."""
        await self.fetch("check", "SELECT 1")

    async def close(self) -> None:
        """Close the pool if it was opened; the connection may be opened again later."""
        async with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
