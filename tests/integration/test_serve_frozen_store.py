"""The kill switch and the read routes of `remediator serve` while its embedded PostgreSQL is
frozen (SIGSTOP on the postmaster and its children: connections open, nothing answers, as a
stalled VM or network). The pause takes effect in Redis and says it is not on the record yet,
within the routes' store bound; the routes that read the store answer 503 within it too. Once
the store thaws, the pause and the resume are in the audit log, once each, in order.

Before, ``remediator pause`` printed "no answer within 30s" and exited 1 after 32 s (the
server answered "audited": false after 60 s), and the events, report and review pages took
20 to 60 s, while the pause had taken effect at once.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp

from receiver.audit_outbox import DRAIN_EVERY_S, GRACE_S
from receiver.http.deps import REVIEW_TIMEOUT_S, STORE_TIMEOUT_S
from tests.support.polling import eventually
from tests.support.postgres import frozen_postmaster
from tests.support.served import ServeFactory, cli, env_for

# The store's bound, a CLI's start and a busy 2-core machine: far under the old 32 to 60 s.
BOUND_S = 15.0
assert STORE_TIMEOUT_S + 5 <= BOUND_S
# The review's reads have a longer bound of their own (large reads), under the CLI's 30 s.
REVIEW_BOUND_S = REVIEW_TIMEOUT_S + 5
# Reads that went without a deadline before (20 to 60 s), and two that had one by accident.
READ_ROUTES = ("/api/v1/events", "/api/v1/runs", "/api/v1/jobs")
REVIEW_ROUTES = ("/api/v1/report", "/runs")
QUEUED = "it will be recorded there once the store is back"


async def _paused(env: dict[str, str]) -> bool:
    code, out, err = await cli(env, "status", "--json", timeout_s=BOUND_S)
    assert code == 0, err
    return bool(json.loads(out)["paused"])


async def _timed_cli(env: dict[str, str], *args: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    code, out, err = await cli(env, *args, timeout_s=60)
    return code, out, err, time.monotonic() - started


async def test_pause_resume_and_reads_answer_in_time_while_postgres_is_frozen(
    serve: ServeFactory, embedded_dir: Path
) -> None:
    served = serve()
    env = env_for(embedded_dir)  # the CLI finds the server and its token in the data dir
    operator = {"Authorization": f"Bearer {served.operator}"}
    timeout = aiohttp.ClientTimeout(total=REVIEW_BOUND_S + 5)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def refused_in_time(path: str, bound_s: float) -> None:
            started = time.monotonic()
            async with session.get(served.url + path, headers=operator) as resp:
                elapsed = time.monotonic() - started
                assert resp.status == 503, path
                if path.startswith("/api/"):
                    assert await resp.json() == {"error": "store unavailable"}, path
            assert elapsed < bound_s, (path, elapsed)

        # Warm connections in the pool: the case that waited a minute.
        for path in (*READ_ROUTES, "/api/v1/report"):
            async with session.get(served.url + path, headers=operator) as resp:
                assert resp.status == 200, path
        with frozen_postmaster(embedded_dir / "postgres" / "data"):
            code, out, err, elapsed = await _timed_cli(env, "pause", "--reason", "db frozen")
            assert code == 0, err
            assert elapsed < BOUND_S, elapsed
            assert "automation paused until resume" in out
            assert QUEUED in err
            assert await _paused(env)  # in Redis, which answers

            for path in READ_ROUTES:
                await refused_in_time(path, BOUND_S)
            # Together: each waits out the review's longer bound.
            await asyncio.gather(*(refused_in_time(p, REVIEW_BOUND_S) for p in REVIEW_ROUTES))

            code, out, err, elapsed = await _timed_cli(env, "resume")
            assert code == 0, err
            assert elapsed < BOUND_S, elapsed
            assert "automation resumed" in out
            assert QUEUED in err
            assert not await _paused(env)
    # The log names each row not written yet.
    missing = [
        json.loads(line)
        for line in served.output
        if "not yet recorded in the audit log" in line and line.startswith("{")
    ]
    assert [(m["kind"], m["by"]) for m in missing] == [
        ("guards.pause", "local"),
        ("guards.resume", "local"),
    ]
    # Thawed: the kill switch is on the record again (the pool's frozen connections were
    # closed at the deadline, not left to hang the next caller).
    deadline = time.monotonic() + 60
    while True:
        code, out, err, _ = await _timed_cli(env, "pause", "--reason", "db back")
        assert code == 0, err
        if "audit log" not in err:
            break
        assert time.monotonic() < deadline, "the pause was never audited after the thaw"

    # And the two made while it was frozen are on the record, once each, in that order.
    async def exported() -> list[dict[str, object]]:
        code, out, err = await cli(env, "audit", "export", "--since", "1h", timeout_s=60)
        assert code == 0, err
        rows = [json.loads(line) for line in out.splitlines()]
        return [r["data"] for r in rows if str(r["kind"]).startswith("guards.")]

    entries = [m["entry"] for m in missing]
    rows = await eventually(
        exported,
        lambda rows: {r.get("entry") for r in rows} >= set(entries),
        timeout_s=GRACE_S + DRAIN_EVERY_S + 30,
        interval_s=1.0,
        what="the pause and the resume made while the store was frozen, in the audit log",
    )
    assert [r["entry"] for r in rows if r.get("entry") in entries] == entries
    assert [r.get("reason") for r in rows if r.get("entry") in entries] == ["db frozen", None]
