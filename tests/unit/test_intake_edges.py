"""Pure pieces of the intake's edges: which store errors mean "unavailable" (503), how an error
is described without the values it quotes, and the throttle of repeated warnings."""

from __future__ import annotations

import asyncpg
import asyncpg.exceptions._base as asyncpg_base
import pytest

from receiver.log_limits import Throttle
from receiver.store.errors import describe, is_unavailable

E = asyncpg.exceptions


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError(104, "reset by peer"),
        TimeoutError(),
        E.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        E.AdminShutdownError("terminating connection due to administrator command"),
        E.CannotConnectNowError("the database system is shutting down"),
        E.CrashShutdownError("crash"),
        E.TooManyConnectionsError("too many clients"),
        E.DiskFullError("could not extend file"),
        E.OutOfMemoryError("out of memory"),
        E.QueryCanceledError("canceling statement due to statement timeout"),
        E.PostgresIOError("could not read block"),
        E.ReadOnlySQLTransactionError("cannot execute INSERT in a read-only transaction"),
        # What PostgreSQL shutting down under a statement looked like (issue 8).
        E.InternalClientError("got result for unknown protocol state 3"),
        E.ProtocolError("unexpected message"),
        E.InterfaceError("cannot perform operation: connection is closed"),
        E.InterfaceError("pool is closing"),
        E.InterfaceError("pool is closed"),
        E.InterfaceError("the connection was lost"),
    ],
    ids=lambda exc: type(exc).__name__ + ":" + str(exc)[:30],
)
def test_unavailable(exc: Exception) -> None:
    assert is_unavailable(exc)


@pytest.mark.parametrize(
    "exc",
    [
        E.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        E.DataError("invalid input"),
        E.UniqueViolationError("duplicate key"),
        E.ProgramLimitExceededError("index row size 3024 exceeds btree version 4 maximum 2704"),
        E.DeadlockDetectedError("deadlock detected"),
        E.UndefinedTableError("relation does not exist"),
        asyncpg_base.DataError("invalid input for query argument $5: ['x'] (bad)"),
        E.InterfaceError("cannot perform operation: another operation is in progress"),
        UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"),
        ValueError("x"),
        RuntimeError("x"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_refused_statements_are_not_unavailable(exc: Exception) -> None:
    assert not is_unavailable(exc)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            asyncpg_base.DataError(
                'invalid input for query argument $5: [\'{"secret":"of another sender"}\'] '
                "(unsupported Unicode escape sequence)"
            ),
            "DataError",
        ),
        (
            E.UntranslatableCharacterError('\\u0000 cannot be converted to text: "secret"'),
            "UntranslatableCharacterError (SQLSTATE 22P05)",
        ),
        (UnicodeEncodeError("utf-8", "secret\ud800", 6, 7, "surrogates"), "UnicodeEncodeError"),
    ],
)
def test_describe_names_the_error_without_its_values(exc: Exception, expected: str) -> None:
    assert describe(exc) == expected
    assert "secret" not in describe(exc)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_throttle_lets_one_through_per_interval_and_counts_the_rest() -> None:
    clock = _Clock()
    throttle = Throttle(10.0, clock)
    assert throttle.ready() == 0  # the first one goes through at once
    assert [throttle.ready() for _ in range(5)] == [None] * 5
    clock.now += 9.999
    assert throttle.ready() is None
    clock.now += 0.001
    assert throttle.ready() == 6  # and says how many were held back
    assert throttle.ready() is None
    clock.now += 60
    assert throttle.ready() == 1
    clock.now += 10
    assert throttle.ready() == 0


def test_throttle_of_zero_lets_everything_through() -> None:
    throttle = Throttle(0.0, _Clock())
    assert [throttle.ready() for _ in range(3)] == [0, 0, 0]


def test_throttle_refuses_a_negative_interval() -> None:
    with pytest.raises(ValueError, match="every_s"):
        Throttle(-1.0)
