"""A frozen PostgreSQL (SIGSTOP: connections open, nothing answers) gets bounded answers.

Not the same as a server that is down, which refuses connections at once: here every
statement waits, and asyncpg's cancellation waits for the server too. The webhook must still
answer 503 within the intake timeout (Alertmanager retries a 5xx, and its notification deadline
is 10 s at the least), /readyz within the readiness timeout, and everything answered 200 stays
stored.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from itertools import count
from typing import Any

import aiohttp
import pytest
import structlog
from pydantic import SecretStr

from receiver.config import Settings
from receiver.http.alerts import ALERTS_PATH
from receiver.http.app import create_app
from receiver.http.deps import HealthChecks
from receiver.intake import Intake
from receiver.review.loader import Review
from receiver.store import OnceEntry, Store, StoreUnavailable
from receiver.telemetry import Metrics
from tests.support.events import new_event
from tests.support.http import AUTH, TOKEN, AiohttpClient, Client, sample
from tests.support.polling import PATIENCE_S, eventually
from tests.support.postgres import PostgresServer

pytestmark = [pytest.mark.postgres]

# Short on purpose: while the server is frozen every call takes its whole deadline, and the
# test shows the answer comes at that deadline, not at the store's command timeout.
INTAKE_TIMEOUT_S = 1.0
READINESS_TIMEOUT_S = 0.5
# What a frozen server cost before the bound: the deadline plus asyncpg waiting for the
# server to acknowledge the cancellation, up to the command timeout (60 s for a webhook, 32 s
# for a 2 s readiness check). The test's store waits that long, so a regression costs minutes.
COMMAND_TIMEOUT_S = 300.0
# Scheduling on a busy 2-core machine (seconds late, at times): far below the regression's
# COMMAND_TIMEOUT_S, so a bound that is kept passes and one that is lost still fails.
MARGIN_S = 30.0
# The client gives up before the regression's COMMAND_TIMEOUT_S: a regression fails instead
# of hanging.
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=PATIENCE_S)


def _notification(name: str) -> dict[str, Any]:
    payload = copy.deepcopy(sample())
    for alert in payload["alerts"]:
        alert["fingerprint"] = hashlib.sha256(name.encode()).hexdigest()[:16]
        alert["labels"]["seed"] = name
    return payload


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    # Warm connections in the pool: the first request after the freeze gets one whose server
    # stopped answering, the case that hung 60 s.
    connected = await Store.connect(
        database_url,
        min_size=2,
        max_size=4,
        connect_timeout_s=2,
        command_timeout_s=COMMAND_TIMEOUT_S,
    )
    try:
        yield connected
    finally:
        await connected.close()


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, store: Store) -> AsyncIterator[Client]:
    intake = Intake(store, timeout_s=INTAKE_TIMEOUT_S)

    async def store_check() -> str:
        await store.ping(READINESS_TIMEOUT_S)
        return "ok"

    settings = Settings(
        webhook_token=SecretStr(TOKEN), readiness_timeout_seconds=READINESS_TIMEOUT_S
    )
    app = create_app(
        settings=settings,
        intake=intake,
        metrics=Metrics(),
        health=HealthChecks(store=store_check),
        runs_reader=store,
        log=structlog.get_logger("test"),
    )
    try:
        yield await aiohttp_client(app)
    finally:
        await intake.drain()


async def _timed(call: Callable[[], Awaitable[Any]]) -> tuple[Any, float]:
    started = time.monotonic()
    result = await call()
    return result, time.monotonic() - started


async def _post(client: Client, name: str) -> int:
    response = await client.post(
        ALERTS_PATH, json=_notification(name), headers=AUTH, timeout=CLIENT_TIMEOUT
    )
    return response.status


async def _post_until_accepted(client: Client, name: str) -> None:
    """Post ``name`` until it is answered 200: with the server up, a 503 only says the write
    outlasted the short intake deadline on a busy machine (Alertmanager sends it again)."""
    deadline = time.monotonic() + PATIENCE_S
    while (status := await _post(client, name)) != 200:
        assert status == 503
        assert time.monotonic() < deadline, f"{name!r} was never accepted"


async def _stored(store: Store) -> set[str]:
    async with store._tx() as conn:
        rows = await conn.fetch("SELECT labels->>'seed' AS seed FROM alert_events")
    return {r["seed"] for r in rows}


async def test_webhook_and_readyz_answer_503_in_time_while_postgres_is_frozen(
    pg_controlled: PostgresServer, client: Client, store: Store
) -> None:
    await _post_until_accepted(client, "before")
    with pg_controlled.frozen():
        status, elapsed = await _timed(lambda: _post(client, "first"))
        assert status == 503
        assert elapsed < INTAKE_TIMEOUT_S + MARGIN_S, elapsed

        # Several at once (one group commit, or queued behind it): each has its own bound.
        statuses, elapsed = await _timed(
            lambda: asyncio.gather(*(_post(client, f"burst{i}") for i in range(4)))
        )
        assert statuses == [503] * 4
        assert elapsed < INTAKE_TIMEOUT_S + MARGIN_S, elapsed

        response, elapsed = await _timed(lambda: client.get("/readyz", timeout=CLIENT_TIMEOUT))
        assert response.status == 503
        assert elapsed < READINESS_TIMEOUT_S + MARGIN_S, elapsed
        store_component = (await response.json())["components"]["store"]
        assert store_component["ok"] is False

    # Thawed: the service takes alerts again without a restart (poll until it does).
    await _post_until_accepted(client, "after")
    await eventually(
        lambda: client.get("/readyz", timeout=CLIENT_TIMEOUT),
        lambda readyz: readyz.status == 200,
        what="/readyz ready after the thaw",
    )
    # Everything answered 200 is stored; what got 503 may or may not be (Alertmanager resends
    # it, and the resend is then a duplicate).
    assert {"before", "after"} <= await _stored(store)


async def test_store_calls_are_bounded_by_their_own_timeout_while_frozen(
    pg_controlled: PostgresServer, store: Store
) -> None:
    """The store itself gives up at its deadline (not only the caller waiting for it): the
    intake writer and the readiness probe are free again for the next request."""
    await store.ping()
    with pg_controlled.frozen():
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="did not answer within 1s"):
            await store.insert_events([new_event("frozen")], timeout_s=1.0)
        assert time.monotonic() - started < 1.0 + MARGIN_S

        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.ping(READINESS_TIMEOUT_S)
        assert time.monotonic() - started < READINESS_TIMEOUT_S + MARGIN_S
    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            await store.ping()
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the pool never recovered after the thaw"
    assert await store.insert_events([new_event("thawed")]) == (1, 0)


async def _audit_rows(store: Store, kind: str) -> int:
    async with store._tx() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM audit_log WHERE kind = $1", kind)
    return count


async def test_a_bounded_store_answers_every_call_in_time_while_frozen(
    pg_controlled: PostgresServer, store: Store
) -> None:
    """``Store.bounded``, what the routes read and write through: every method gives up at the
    deadline, those without one of their own (the queues, the review, the audit row of a
    pause) included; a write given up may have committed, once, and the chain holds. A pause's
    record, written again after the thaw as the kill switch's drain does, is there once.

    The same calls on a view of the same pool with a bound that only stops a hang warm its
    connections and write after the thaw: the 1 s bound is for the frozen server, and a busy
    machine can take longer than that with the server up."""
    bounded, patient = store.bounded(1.0), store.bounded(PATIENCE_S)
    keys = count()
    tried: list[OnceEntry] = []

    def calls_on(view: Store) -> dict[str, Callable[[], Awaitable[Any]]]:
        review = Review(view)

        def pause_record() -> Awaitable[list[str]]:
            key = f"pause-{next(keys)}"
            entry = OnceEntry(key, "test.once", {"by": "alice", "entry": key}, datetime.now(UTC))
            tried.append(entry)
            return view.append_once([entry])

        return {
            "list_events": lambda: view.list_events(),
            "list_jobs": lambda: view.list_jobs(),
            "list_runs": lambda: view.list_runs(),
            "list_approvals": lambda: view.list_approvals(),
            "dead_counts": view.dead_counts,
            "review.run_page": lambda: review.run_page(),
            "append_audit": lambda: view.append_audit("guards.pause", data={"by": "alice"}),
            "append_once": pause_record,
        }

    for call in calls_on(patient).values():
        await call()  # warm connections: the first call after the freeze gets a stalled one
    before = await _audit_rows(store, "guards.pause")
    with pg_controlled.frozen():
        for name, call in calls_on(bounded).items():
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="did not answer within 1s"):
                await call()
            assert time.monotonic() - started < 1.0 + MARGIN_S, name
    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            await bounded.ping()
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the bounded pool never recovered after the thaw"
    # Nothing writes the row again: at most the one given up, had its COMMIT been sent.
    assert await _audit_rows(store, "guards.pause") - before in (0, 1)
    assert await patient.append_once([tried[-1]]) in ([], [tried[-1].key])
    assert await _audit_rows(store, "test.once") == 2  # the warm call's and the frozen one's
    assert (await store.verify_audit()).ok
    await patient.append_audit("guards.resume", data={"by": "alice"})
    assert await _audit_rows(store, "guards.resume") == 1
