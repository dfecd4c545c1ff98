"""What the benchmarks share: the webhook client, the server processes, and what /proc says
about them (CPU seconds and memory of one process tree), the machine, and the figures' maths.

Linux only: CPU and memory come from ``/proc`` (proc(5)).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp

from receiver.fingerprints import fingerprint

TOKEN = "bench-token-" + uuid.uuid4().hex
STARTS_AT = "2026-11-25T10:00:00.123456789Z"


def alert(labels: dict[str, str], summary: str) -> dict[str, Any]:
    """One firing alert as Alertmanager's webhook sends it, fingerprinted like Alertmanager."""
    return {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": summary},
        "startsAt": STARTS_AT,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint(labels),
    }


def webhook(alerts: list[dict[str, Any]], group: str) -> bytes:
    """A webhook notification (version 4) of ``alerts``, grouped under ``group``."""
    alertname = alerts[0]["labels"]["alertname"] if alerts else "BenchAlert"
    body = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}", group="{group}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "remediator",
        "groupLabels": {"alertname": alertname},
        "commonLabels": {"alertname": alertname},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }
    return json.dumps(body).encode()


def client_session(concurrency: int) -> aiohttp.ClientSession:
    """A client that sends the bench's token, at most ``concurrency`` connections."""
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        connector=aiohttp.TCPConnector(limit=concurrency),
    )


async def wait_ready(url: str, proc: subprocess.Popen[bytes], limit_s: float = 60) -> None:
    """Poll ``url`` until it answers 200; RuntimeError when the server exits or ``limit_s``
    passes first."""
    deadline = time.monotonic() + limit_s
    async with aiohttp.ClientSession() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                async with client.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {limit_s}s")


@contextmanager
def server(argv: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with its output in ``log``; terminated (then killed) on exit."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    """A new directory for one round, printed. Its stores (``services/`` and ``data/``:
    gigabytes after the storm round) are removed at the end; the server logs stay."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    print(f"workdir: {work} (server logs stay there; the stores are removed at the end)")
    try:
        yield work
    finally:
        for store in ("services", "data"):
            shutil.rmtree(work / store, ignore_errors=True)


# -- /proc: one process tree's CPU and memory --------------------------------------------------


def _stat(pid: int) -> list[str]:
    # The fields after the command name, which may itself hold spaces and parentheses.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` alone (utime + stime)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_ns(pid: int) -> int:
    """CPU nanoseconds ``pid`` has run (the first field of /proc/PID/schedstat): for a figure
    per statement, where ``cpu_seconds``' clock ticks (10 ms) would need thousands of them."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def machine_ticks() -> tuple[int, ...]:
    """The machine's CPU time so far, every core and process summed, in clock ticks by kind:
    user, nice, system, idle, iowait, irq, softirq, steal (/proc/stat's first line)."""
    return tuple(int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9])


def where_the_cores_went(ticks: tuple[int, ...], ours_s: float) -> str:
    """Shares of the machine's CPU time over an interval (``ticks``: the difference of two
    ``machine_ticks``), with ``ours_s`` CPU seconds of it the bench's own processes': what
    they used, what other processes used, and what was left idle, waiting on the disk, or
    taken by the hypervisor (steal). A drain slower at the same CPU per event shows here as
    idle (its events waited on each other), as others' work, or as steal."""
    user, nice, system, idle, iowait, irq, softirq, steal = ticks
    total = sum(ticks) or 1
    ours = ours_s * os.sysconf("SC_CLK_TCK")
    busy = user + nice + system + irq + softirq
    return (
        f"this bench's processes {ours / total:.0%}, other processes "
        f"{max(0.0, busy - ours) / total:.0%}, idle {idle / total:.0%}, waiting on the disk "
        f"{iowait / total:.0%}, steal {steal / total:.0%}"
    )


def children(pid: int) -> list[int]:
    """The live children of ``pid`` (every thread's, from /proc/PID/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue  # a thread that ended meanwhile
    return found


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            todo.extend(children(current))
        except OSError:
            continue  # exited meanwhile
    return pids


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and every descendant, the exited ones included: each process's
    utime + stime, plus cutime + cstime (the children it has reaped: PostgreSQL's backends
    that closed, once the postmaster waited for them). Exact for a tree whose processes all
    reap their children; nothing outside the tree is counted."""
    total = 0.0
    for member in tree(pid):
        try:
            fields = _stat(member)
        except OSError:
            continue  # exited meanwhile: its parent's cutime has it once reaped
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")
    return total


def _gone_ok() -> suppress:
    # A backend can exit between listing the tree and reading it.
    return suppress(OSError, KeyError, IndexError, ValueError)


def _status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(peak RSS, current RSS) of ``pid`` in MiB (VmHWM, VmRSS)."""
    fields = _status(pid)
    return int(fields["VmHWM"].split()[0]) / 1024, int(fields["VmRSS"].split()[0]) / 1024


def tree_peak_rss_mb(pid: int) -> float:
    """Sum of the peak RSS (VmHWM) of ``pid`` and its live descendants, in MiB: the service's
    figure (its worker processes counted too, ``worker.processes``)."""
    return tree_rss_mb(pid)[0]


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """(peak RSS, current RSS) of ``pid`` and its live descendants, each summed, in MiB."""
    peak = current = 0.0
    for member in tree(pid):
        with _gone_ok():
            hwm, rss = peak_rss_mb(member)
            peak, current = peak + hwm, current + rss
    return peak, current


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of ``pid`` and its live descendants, in MiB: shared memory
    (PostgreSQL's shared buffers) is divided among the processes mapping it, so the sum counts
    it once, unlike a sum of RSS."""
    total_kb = 0
    for member in tree(pid):
        with _gone_ok():
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
                    break
    return total_kb / 1024


def postmaster_pid(data_dir: Path) -> int:
    """The postmaster's pid, from the first line of ``data_dir/postmaster.pid``."""
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def redis_server_pid(root_dir: Path) -> int:
    """The embedded redis-server's pid, from ``root_dir/redis.pid`` (its ``--pidfile``)."""
    return int((root_dir / "redis.pid").read_text().split()[0])


# -- the machine and the figures -----------------------------------------------------------


def machine() -> str:
    """CPU model, cores, RAM, kernel and Python: the context every figure is printed with.

    The CPU is named with its family, model and clock as /proc/cpuinfo gives them: under a
    hypervisor the model name can be the vendor's alone ("AMD EPYC"), the same for hosts of
    different generations that measure twice as fast or slow (docs/performance-history.md,
    stop 31)."""
    return describe_machine(Path("/proc/cpuinfo").read_text(), Path("/proc/meminfo").read_text())


def describe_machine(cpuinfo: str, meminfo: str) -> str:
    """``machine()``'s line from the texts of /proc/cpuinfo and /proc/meminfo."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if fields:
                break  # the first processor's block is enough
            continue
        fields.setdefault(key.strip(), value.strip())
    cpu = fields.get("model name", "unknown cpu")
    detail = ", ".join(
        f"{label} {fields[key]}"
        for label, key in (("family", "cpu family"), ("model", "model"))
        if key in fields
    )
    with contextlib.suppress(KeyError, ValueError):  # no clock given (ARM), or not a number
        detail += f"{', ' if detail else ''}{float(fields['cpu MHz']):.0f} MHz"
    if detail:
        cpu = f"{cpu} ({detail})"
    mem_kb = int(meminfo.split()[1])
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_kb / 1024 / 1024:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def median(values: Iterable[float]) -> float:
    """The median; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: Iterable[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0-100) of ``values``; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def against(value: float, target: float, unit: str, *, above: bool = False) -> str:
    """``value`` beside its target: ``9.1 s (target < 10 s: 0.91x, met)``. ``above``: the
    target is a floor (``>=``) rather than a ceiling (``<``). A missing value (NaN) is
    ``not measured``."""
    if value != value:  # NaN
        return f"not measured (target {'>=' if above else '<'} {target:g} {unit})"
    met = value >= target if above else value < target
    ratio = value / target if target else float("inf")
    return (
        f"{value:.{_digits(value)}f} {unit} (target {'>=' if above else '<'} {target:g} {unit}: "
        f"{ratio:.2f}x, {'met' if met else 'not met'})"
    )


def _digits(value: float) -> int:
    return 0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2


def flush_latency_ms(directory: Path, count: int = 200, size: int = 16384) -> tuple[float, float]:
    """How long this disk takes to make a commit durable, where the bench's PostgreSQL keeps
    its WAL: ``count`` writes of ``size`` bytes into a preallocated file in ``directory``, each
    followed by ``os.fdatasync`` (what PostgreSQL's default ``wal_sync_method`` does at every
    commit on Linux, into WAL segments it also preallocates); (p50, p99) in ms, write and flush
    together. The receiver answers a webhook after such a flush and the ceiling never waits
    for one: where flushes are slow, the intake ratio follows the disk, not the CPU."""
    path = directory / "flush-probe"
    blocks = 16
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, bytes(size * blocks))
        os.fsync(fd)
        payload = os.urandom(size)
        took: list[float] = []
        for i in range(count):
            started = time.perf_counter()
            os.pwrite(fd, payload, (i % blocks) * size)
            os.fdatasync(fd)
            took.append(1e3 * (time.perf_counter() - started))
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return percentile(took, 50), percentile(took, 99)


async def sample_memory(
    postmaster: int, service: int, peak: list[float], interval_s: float = 0.5
) -> None:
    """Keep ``peak`` at the largest PSS seen of this PostgreSQL's processes (``peak[0]``) and
    of the service's (``peak[1]``: its worker processes share the interpreter's and the
    extensions' file-backed pages, which a sum of RSS counts in each), until cancelled."""
    while True:
        peak[0] = max(peak[0], await asyncio.to_thread(tree_pss_mb, postmaster))
        peak[1] = max(peak[1], await asyncio.to_thread(tree_pss_mb, service))
        await asyncio.sleep(interval_s)
