"""`make bench`, storm round: a storm of matched alerts on a store with a month of history.

Issue 12's scenario: ``--stored`` finished events already stored (1,000,000; inserted with SQL,
bench/seed.py), then ``--storm-alerts`` alerts that the shipped restart-on-high-memory rule
matches (10,000), spread over ``--targets`` Deployments (1,000), posted as fast as intake takes
them; meanwhile ``--unrelated`` alerts of another shipped rule (QueueBacklog), each on a
Deployment of its own, arrive during the storm: half at evenly spaced points of the posting,
half into the backlog after it, one every ``--unrelated-every`` seconds while events are
queued. The service is the real ``remediator serve`` in dry-run, as ``make run`` runs it, on
PostgreSQL and Redis started from the wheels for this bench (PostgreSQL with
pg_stat_statements loaded and commit times tracked).

Reported (bench/storm_figures.py): the drain time from the last notification until no event is
queued, events/s, the runs admitted and refused (by guard), the unrelated alerts' latency from
POST to the commit of their action (p50/p99, and when idle), peak memory of the service and of
this bench's PostgreSQL, SQL statements and transactions per event, and CPU per event of the
service's processes, of this PostgreSQL's processes and of its Redis only. A benchmark: it compares
with the issue's targets and never fails on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from bench.common import (
    STARTS_AT,
    TOKEN,
    alert,
    client_session,
    machine,
    postmaster_pid,
    redis_server_pid,
    sample_memory,
    server,
    tree_pss_mb,
    wait_ready,
    webhook,
    workdir,
)
from bench.seed import NAMESPACE, seed
from bench.settings import (
    add_postgres_setting_argument,
    round_settings,
    settings_note,
    worker_shape,
)
from bench.storm_figures import Acted, Monitor, Usage, report
from bench.storm_parts import PARTS, TRACE_SETUP, parts_line, parts_of
from receiver.embedded import EmbeddedServices
from receiver.embedded.process import free_port
from receiver.store.migrate import migrate

# pg_stat_statements must be loaded when PostgreSQL starts (its shared memory).
# pg_stat_statements, planning counted too: a statement planned again at every call spends
# its CPU there, which the execution time does not show.
# Commit times: an unrelated alert's action is timed to the commit that made it visible
# (bench/storm_sql.py, ACTED); it costs a commit 10 bytes in an SLRU of its own and a WAL
# record per page of 819 commits (the storm round's figures with and without it: README).
POSTGRES_SETTINGS = {
    "shared_preload_libraries": "pg_stat_statements",
    "pg_stat_statements.track_planning": "on",
    "track_commit_timestamp": "on",
}
MONITOR_ROLE = "bench_monitor"

# Unrelated alerts posted one at a time before the storm: the first IDLE_WARM_UP (the service's
# first after its start, on cold connections: shown apart), then IDLE_MEASURED (the idle figure).
IDLE_WARM_UP = 8
IDLE_MEASURED = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The storm round's options (``--concurrency`` is shared with the intake round and
    defined there)."""
    group = parser.add_argument_group("storm round")
    group.add_argument("--stored", type=int, default=1_000_000, help="events stored before")
    group.add_argument("--storm-alerts", type=int, default=10_000, help="matched alerts")
    group.add_argument("--targets", type=int, default=1_000, help="Deployments they are on")
    group.add_argument("--unrelated", type=int, default=20, help="other rule's alerts during it")
    group.add_argument(
        "--unrelated-every",
        type=float,
        default=0.5,
        help="seconds between the unrelated alerts posted into the backlog",
    )
    group.add_argument("--batch", type=int, default=10, help="alerts per storm notification")
    group.add_argument(
        "--storm-drain-limit", type=float, default=600.0, help="seconds to wait for the drain"
    )


def storm_alert(i: int, targets: int) -> dict[str, Any]:
    """Storm alert ``i``: on Deployment ``web-(i mod targets)``, its ``i div targets``-th pod,
    so consecutive alerts are on different targets and each target gets its share."""
    target, pod = i % targets, i // targets
    labels = {
        "alertname": "HighMemoryUsage",
        "namespace": NAMESPACE,
        "severity": "warning",
        "deployment": f"web-{target}",
        "instance": f"web-{target}-pod-{pod}",
    }
    return alert(labels, f"storm alert {i}")


def unrelated_alert(name: str) -> dict[str, Any]:
    """An alert of another shipped rule (scale-workers-on-queue-backlog: one step, no
    condition on live state, so it plans in dry-run without a cluster) on a Deployment of its
    own: neither its rule nor its target is the storm's."""
    labels = {
        "alertname": "QueueBacklog",
        "namespace": "jobs",
        "severity": "warning",
        "deployment": name,
    }
    return alert(labels, f"unrelated alert {name}")


async def _post(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    answered: tuple[dict[str, float], str] | None = None,
) -> int:
    """POST until intake takes it, as Alertmanager retries: returns the retries it took.
    ``answered``: (times, fingerprint): when intake's 200 was read goes into ``times`` (epoch
    seconds) under the fingerprint."""
    for attempt in range(20):
        async with http.post(url, data=body) as resp:
            await resp.read()
            if resp.status == 200:
                if answered is not None:
                    answered[0][answered[1]] = time.time()
                return attempt
        await asyncio.sleep(0.05 * (attempt + 1))
    raise RuntimeError(f"intake refused a notification 20 times (last status {resp.status})")


async def idle_latencies(
    http: aiohttp.ClientSession,
    url: str,
    monitor: Monitor,
    warm_up: int,
    count: int,
    times: tuple[dict[str, float], dict[str, float]],
) -> tuple[list[Acted], list[Acted]]:
    """Unrelated alerts posted one at a time on an idle service, ``warm_up`` and then ``count``
    more: the actions of the warm-up's (the service's first alerts after its start) and of the
    ``count`` after them (idle), each in the order posted. ``times``: (POST times, answer
    times) of the ``count`` (epoch seconds by fingerprint) are put there."""
    posted: list[tuple[str, float]] = []
    for k in range(warm_up + count):
        item = unrelated_alert(f"idle-{k}")
        posted.append((item["fingerprint"], time.time()))
        answered = (times[1], item["fingerprint"]) if k >= warm_up else None
        await _post(http, url, webhook([item], f"idle-{k}"), answered)
        if k >= warm_up:
            times[0][item["fingerprint"]] = posted[-1][1]
        await monitor.wait_empty(30.0)
    acted = await monitor.latencies_ms(dict(posted))
    ms = [acted.get(fingerprint) for fingerprint, _ in posted]
    first = [m for m in ms[:warm_up] if m is not None]
    return first, [m for m in ms[warm_up:] if m is not None]


async def post_storm(
    http: aiohttp.ClientSession,
    url: str,
    args: argparse.Namespace,
    count: int,
    answered: dict[str, float],
) -> tuple[dict[str, float], int, float, float]:
    """Post the storm closed-loop at ``args.concurrency``, with ``count`` unrelated alerts at
    evenly spaced points of it. Returns the unrelated alerts' POST times (epoch seconds, by
    fingerprint), the retries, and when the first and last notification were taken
    (perf_counter); when intake answered each unrelated one goes into ``answered``."""
    bodies: list[tuple[bytes, str | None]] = []
    for start in range(0, args.storm_alerts, args.batch):
        stop = min(args.storm_alerts, start + args.batch)
        items = [storm_alert(i, args.targets) for i in range(start, stop)]
        bodies.append((webhook(items, f"storm-{start}"), None))
    for k in reversed(range(count)):
        item = unrelated_alert(f"consumer-{k}")
        at = round((k + 0.5) * len(bodies) / count) if bodies else 0
        bodies.insert(at, (webhook([item], f"unrelated-{k}"), item["fingerprint"]))
    todo = iter(bodies)
    posted: dict[str, float] = {}
    retries = 0

    async def user() -> None:
        nonlocal retries
        for body, unrelated in todo:
            if unrelated is not None:
                posted[unrelated] = time.time()
            retries += await _post(
                http, url, body, None if unrelated is None else (answered, unrelated)
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(args.concurrency)))
    return posted, retries, t0, time.perf_counter()


async def post_into_backlog(
    http: aiohttp.ClientSession,
    url: str,
    monitor: Monitor,
    count: int,
    every_s: float,
    posted: dict[str, float],
    answered: dict[str, float],
) -> None:
    """Post ``count`` unrelated alerts, one every ``every_s`` seconds while the monitor last
    saw events queued; their POST times go into ``posted`` and intake's answers' into
    ``answered`` (epoch seconds by fingerprint)."""
    for k in range(count):
        await asyncio.sleep(every_s)
        if monitor.last_depth == 0:
            return
        item = unrelated_alert(f"backlog-consumer-{k}")
        posted[item["fingerprint"]] = time.time()
        await _post(http, url, webhook([item], f"backlog-{k}"), (answered, item["fingerprint"]))


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[Any]:
    conn = await asyncpg.connect(url)
    try:
        yield conn
    finally:
        await conn.close()


def _as_role(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


async def prepare(database_url: str, args: argparse.Namespace) -> tuple[str, float]:
    """Migrate, load pg_stat_statements, store the history; a role of the bench's own for the
    monitor's queries (so pg_stat_statements tells them apart). Returns the monitor's URL and
    the seconds storing took."""
    async with connected(database_url) as conn:
        await migrate(conn)
        await conn.execute(TRACE_SETUP)
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        password = secrets.token_hex(16)
        await conn.execute(f"CREATE ROLE {MONITOR_ROLE} LOGIN SUPERUSER PASSWORD '{password}'")
        print(f"[storm] storing {args.stored:,} finished events …", flush=True)
        seconds = await seed(conn, args.stored, args.targets)
    return _as_role(database_url, MONITOR_ROLE, password), seconds


async def run(args: argparse.Namespace) -> None:
    """The storm round, printed."""
    print(f"machine: {machine()}")
    # The bench's own settings win: its figures need pg_stat_statements.
    postgres_settings, applied, overridden = round_settings(
        args.postgres_settings, POSTGRES_SETTINGS
    )
    if note := settings_note(applied):
        print(note)
    if overridden:
        print(f"not applied to the storm round, whose figures need them: {', '.join(overridden)}")
    with (
        workdir("remediator-storm-") as work,
        EmbeddedServices(work / "services", postgres_settings=postgres_settings) as services,
        contextlib.ExitStack() as stack,
    ):
        assert services.database_url is not None
        env = dict(os.environ)
        env.update(
            REMEDIATOR_DATABASE_URL=services.database_url,
            REMEDIATOR_REDIS_URL=str(services.redis_url),
            REMEDIATOR_WEBHOOK_TOKEN=TOKEN,
            REMEDIATOR_DRY_RUN="true",
            REMEDIATOR_DATA_DIR=str(work / "data"),
            REMEDIATOR_LOG_LEVEL="warning",
        )
        # Before the seed (a million rows): settings serve would refuse end the run at once.
        worker = worker_shape(env)
        monitor_url, seed_s = await prepare(services.database_url, args)
        postmaster = postmaster_pid(work / "services" / "postgres" / "data")
        port = free_port()
        argv = [sys.executable, "-m", "receiver.cli", "serve", "--port", str(port)]
        proc = stack.enter_context(server(argv, env, work / "receiver.log"))
        base = f"http://127.0.0.1:{port}"
        await wait_ready(base + "/readyz", proc)
        url = base + "/api/v1/alerts"
        async with connected(monitor_url) as conn, client_session(args.concurrency) as http:
            monitor = Monitor(conn, STARTS_AT, MONITOR_ROLE)
            print("[storm] idle: unrelated alerts one at a time …", flush=True)
            # The service's first alerts after its start meet cold connections: each of the
            # pool's backends compiles the PL/pgSQL functions, plans the statements and loads
            # its catalog caches on first use (30 to 40 ms for the history read alone), which a
            # service that has been running has done once and for all (the pool keeps its
            # floor of connections). So the idle figure is of the alerts after IDLE_WARM_UP,
            # and the first ones are shown apart. The rule's max_runs (4 an hour) admits the
            # first four (a dry-run step); those measured, like the storm's unrelated alerts,
            # meet that budget spent: the time to their refusal is what is measured.
            idle_times: tuple[dict[str, float], dict[str, float]] = ({}, {})
            answered = idle_times[1]
            cold, idle = await idle_latencies(
                http, url, monitor, IDLE_WARM_UP, IDLE_MEASURED, idle_times
            )
            await monitor.start()
            redis = redis_server_pid(work / "services" / "redis")
            pids = (proc.pid, postmaster, conn.get_server_pid(), redis)
            usage = Usage.now(*pids)
            peak = [0.0, 0.0]
            sampler = asyncio.create_task(sample_memory(postmaster, proc.pid, peak))
            among = (args.unrelated + 1) // 2
            print(
                f"[storm] posting {args.storm_alerts:,} alerts over {args.targets:,} targets "
                f"({among} unrelated among them) …",
                flush=True,
            )
            posted, retries, first, last = await post_storm(http, url, args, among, answered)
            print(f"[storm] posted in {last - first:.1f} s; draining …", flush=True)
            backlog: dict[str, float] = {}
            late = asyncio.create_task(
                post_into_backlog(
                    http,
                    url,
                    monitor,
                    args.unrelated - among,
                    args.unrelated_every,
                    backlog,
                    answered,
                )
            )
            left = await monitor.wait_empty(args.storm_drain_limit, progress=True)
            empty = time.perf_counter()
            used = usage.since(*pids)
            sampler.cancel()
            late.cancel()
            await asyncio.gather(late, return_exceptions=True)
            await monitor.wait_empty(30.0)  # an unrelated alert posted as the queue emptied
            await report(
                monitor,
                args,
                settings=settings_note(applied),
                worker=worker,
                seed_s=seed_s,
                posted={"while posting": posted, "into the backlog": backlog},
                idle=idle,
                warm_up=cold,
                retries=retries,
                times=(first, last, empty),
                left=left,
                used=used,
                service_pid=proc.pid,
                postgres_peak_mb=max(peak[0], tree_pss_mb(postmaster)),
                service_pss_mb=max(peak[1], tree_pss_mb(proc.pid)),
            )
            print("unrelated alert's latency in parts (bench/storm_parts.py):")
            for phase, times in (
                ("while posting", posted),
                ("into the backlog", backlog),
                ("idle", idle_times[0]),
            ):
                acted = await monitor.latencies_ms(times)
                rows = await monitor.fetch(PARTS, list(times), STARTS_AT)
                committed = {f: a.committed_ms for f, a in acted.items()}
                print(parts_line(phase, parts_of(rows, times, answered, committed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--concurrency", type=int, default=32)
    add_arguments(parser)
    add_postgres_setting_argument(parser)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
