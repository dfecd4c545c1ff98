"""The store's periodic upkeep (receiver/store/upkeep.py): a duty repeated until cancelled,
whose failures are warned about at most once per interval and never end it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from receiver.store import StoreUnavailable
from receiver.store.upkeep import keep_pruning, keep_statistics, repeat


class Log:
    """The calls a structlog logger received, as (level, event, key-values)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))


class Rounds:
    """A ``sleep`` that records the intervals asked for and ends the loop after ``n`` rounds."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.slept: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        if len(self.slept) >= self.n:
            raise asyncio.CancelledError


class SecretError(Exception):
    """An error whose message must not reach the log (asyncpg quotes statement arguments)."""

    sqlstate = "22021"


async def test_failures_never_end_the_duty_and_are_warned_about_once_per_interval() -> None:
    outcomes: list[Exception | None] = [
        StoreUnavailable("connection refused"),
        SecretError("invalid byte in alert 'password=hunter2'"),
        None,
        StoreUnavailable("connection refused"),
    ]
    done: list[int] = []

    async def duty() -> None:
        outcome = outcomes[len(done)]
        done.append(1)
        if outcome is not None:
            raise outcome

    log, rounds = Log(), Rounds(4)
    with pytest.raises(asyncio.CancelledError):
        await repeat(duty, every_s=7.0, log=log, failed="upkeep failed", sleep=rounds)
    assert len(done) == 4  # every round ran, after failures too
    assert rounds.slept == [7.0] * 4
    # One warning in the interval: the later failures are held back and counted.
    assert log.lines == [
        ("warning", "upkeep failed", {"error": "connection refused", "not_logged_since_last": 0})
    ]


async def test_a_warning_says_the_errors_type_and_sqlstate_never_its_message() -> None:
    async def duty() -> None:
        raise SecretError("invalid byte in alert 'password=hunter2'")

    log = Log()
    with pytest.raises(asyncio.CancelledError):
        await repeat(duty, every_s=1.0, log=log, failed="f", warn_every_s=0.0, sleep=Rounds(2))
    assert [kw["error"] for _, _, kw in log.lines] == ["SecretError (SQLSTATE 22021)"] * 2
    assert all("hunter2" not in str(line) for line in log.lines)


async def test_a_cancelled_duty_ends_the_loop() -> None:
    async def duty() -> None:
        raise asyncio.CancelledError

    log = Log()
    with pytest.raises(asyncio.CancelledError):
        await repeat(duty, every_s=1.0, log=log, failed="f", sleep=Rounds(10))
    assert log.lines == []


class Store:
    def __init__(self, analysed: list[Sequence[str]], pruned: list[Mapping[str, int]]) -> None:
        self.analysed = analysed
        self.pruned = pruned
        self.retention: list[float] = []

    async def refresh_statistics(self) -> Sequence[str]:
        return self.analysed.pop(0)

    async def prune(self, older_than_s: float) -> Mapping[str, int]:
        self.retention.append(older_than_s)
        return self.pruned.pop(0)


async def test_statistics_and_retention_log_only_the_rounds_that_did_something() -> None:
    store = Store([[], ["runs", "steps"]], [{"events": 0, "jobs": 0}, {"events": 3, "jobs": 0}])
    log = Log()
    statistics_rounds, pruning_rounds = Rounds(2), Rounds(2)
    with pytest.raises(asyncio.CancelledError):
        await keep_statistics(store, log, every_s=2.0, sleep=statistics_rounds)
    with pytest.raises(asyncio.CancelledError):
        await keep_pruning(store, 86400.0, log, every_s=60.0, sleep=pruning_rounds)
    assert (statistics_rounds.slept, pruning_rounds.slept) == ([2.0, 2.0], [60.0, 60.0])
    assert store.retention == [86400.0, 86400.0]
    assert log.lines == [
        (
            "info",
            "analysed tables whose statistics were out of date",
            {"tables": ["runs", "steps"]},
        ),
        ("info", "pruned old alert events and jobs", {"events": 3, "jobs": 0}),
    ]
