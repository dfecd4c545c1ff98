"""``worker.processes``: ``remediator serve`` runs the worker in that many processes, starts the
others itself, restarts one that dies, passes a rules reload on, adds their metrics into its
``/metrics``, and stops them with it, also when it is killed (receiver/processes/).

A real ``serve`` on the test PostgreSQL and Redis with two processes of one slot each
(``worker.concurrency`` 1); a local HTTP endpoint holds each run's step, so two steps in flight
at once can only be two processes' work.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp
import pytest

from tests.support.polling import current, eventually
from tests.support.worker_processes import (
    OTHER,
    alive,
    events_by_process,
    lines,
    metrics,
    served,
    worker_processes,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


async def test_two_processes_work_side_by_side_and_stop_with_serve(
    embedded_dir: Path, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with (
        served(embedded_dir, tmp_path, database_url, redis_url) as running,
        aiohttp.ClientSession() as session,
    ):
        proc, url, output, held = running.proc, running.url, running.output, running.held
        child = await running.worker_process()
        # What serve said as it started (where the guards' Redis is, each warning) the worker
        # process does not say again: only its own start is new.
        said = events_by_process(output)
        assert "guards' redis" in said[None]
        assert said["worker-1"] & said[None] == set(), said["worker-1"]
        await running.post(session, "aaaa000000000001")
        await running.post(session, "bbbb000000000002", OTHER)
        # One slot a process, neither step answered, two targets (a run of one would wait for
        # the other's lock): two in flight are two processes.
        await eventually(current(lambda: len(held.calls)), lambda n: n >= 2, what="two steps")
        assert held.calls == ["first", "first"]
        # Each line says which process wrote it, the pipeline's too: serve's name none.
        admitted = {(r["fingerprint"], r.get("process")) for r in lines(output, "admitted")}
        assert {process for _, process in admitted} == {None, "worker-1"}, admitted
        assert len(admitted) == 2, admitted

        seen_now = await metrics(session, url)
        assert seen_now['remediator_worker_processes{state="configured"}'] == 2
        assert seen_now['remediator_worker_processes{state="answering"}'] == 2

        held.gate.set()

        async def runs_done() -> float:
            seen = await metrics(session, url)
            return sum(v for k, v in seen.items() if k.startswith("remediator_runs_total"))

        # Each process counted its own run; /metrics is the sum.
        assert await eventually(runs_done, lambda n: n >= 2, what="two runs counted") == 2
        # A worker process that does not answer a scrape counts with what it said last: the
        # sum does not step back (Prometheus would read a reset, and count it all again).
        os.kill(child, signal.SIGSTOP)
        try:
            stopped = await metrics(session, url)
        finally:
            os.kill(child, signal.SIGCONT)
        assert stopped['remediator_worker_processes{state="answering"}'] == 1
        assert sum(v for k, v in stopped.items() if k.startswith("remediator_runs_total")) == 2

        # A reload reaches the worker process too.
        proc.send_signal(signal.SIGHUP)
        await eventually(
            current(lambda: [r for r in lines(output, "rules reloaded") if "process" in r]),
            what="worker-1 reloading the rules",
        )

        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 90)
        assert code == 0, "".join(output[-40:])
        assert not alive(child)
        [exited] = lines(output, "worker process exited")
        assert (exited["process"], exited["exit_code"]) == ("worker-1", 0)
        assert lines(output, "worker process stopped")


async def test_a_worker_process_that_dies_is_started_again(
    embedded_dir: Path, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with (
        served(embedded_dir, tmp_path, database_url, redis_url) as running,
        aiohttp.ClientSession() as session,
    ):
        proc, url, output = running.proc, running.url, running.output
        first = await running.worker_process()
        os.kill(first, signal.SIGKILL)
        [restart] = await eventually(
            current(lambda: lines(output, "worker process exited; starting it again")),
            what="the restart logged",
        )
        assert restart["exit_code"] == -signal.SIGKILL
        second = await eventually(
            current(lambda: [p for p in worker_processes(proc.pid) if p != first]),
            what="a new worker process",
        )
        await eventually(
            current(lambda: len(lines(output, "worker process started"))),
            lambda n: n >= 2,
            what="the new one started",
        )

        async def answering_now() -> float:
            seen = await metrics(session, url)
            return seen['remediator_worker_processes{state="answering"}']

        assert await eventually(answering_now, lambda n: n == 2, what="both answering") == 2
        assert second
        assert not alive(first)


async def test_a_killed_serve_takes_its_worker_processes_with_it(
    embedded_dir: Path, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with served(embedded_dir, tmp_path, database_url, redis_url) as running:
        proc, output = running.proc, running.output
        child = await running.worker_process()
        proc.kill()
        await asyncio.to_thread(proc.wait, 30)
        # Its standard input ended: it stops as after SIGTERM, handing back what it held.
        await eventually(current(lambda: not alive(child)), what="the worker process gone")
        assert lines(output, "worker process stopped")
