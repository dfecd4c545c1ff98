"""``python -m bench.micro``: the CPU of three pieces of a storm event and one of intake, each
two ways, in runs taken in turn on the same machine.

- the audit rows' canonical JSON (``receiver/store/canonical.py``): ``audit_data`` of a refused
  event's ``run.created`` row, written by orjson (what the store does) against the standard
  library's ``json`` (the text every row is hashed over), in this process;
- a guard admission (``Guards.admit`` through its batched pipeline, 16 at a time) on a Redis of
  its own, in a child process with redis-py's C parser and packer (``hiredis``) importable and
  in one where it is not;
- the sealing of a refused event's three audit rows at commit, on a PostgreSQL of its own, by
  the seal before migration 0029 and by the seal since (``bench/seal.py``: PostgreSQL backend
  CPU per event, ``python -m bench.seal`` for its options);
- intake's batch document (``event_json``, receiver/store/event_rows.py) of ten notifications
  of the intake round's matched alerts, written by orjson (what intake does) against the
  standard library's encoder (what it did up to stop 48), in this process.

CPU is the process's own (``time.process_time``; for the seal, the PostgreSQL backend's); each
figure is the median of ``--rounds`` rounds, and the ratio is against the run without the
library (the old seal), measured in the same run. The first two are each a few per cent of a
storm event (docs/performance-history.md, stop 28), the seal a sixth of PostgreSQL's CPU in it
(issue 12): the storm round's drain cannot show any of them above its noise."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import Any

from bench.common import machine, median

_ADMISSIONS = 8000
_ROWS = 20000


def _created_row() -> dict[str, Any]:
    """A refused storm event's ``run.created`` data, as runs.py builds it."""
    from receiver.model import RunOutcome
    from receiver.store.steps import step_audit

    return {
        "rule": "restart-on-high-memory",
        "starts_at": "2026-11-25T10:00:00.123456789Z",
        "event_id": 7123456,
        "target": {"kind": "Deployment", "namespace": "shop", "name": "web-1"},
        "outcome": RunOutcome.PENDING,
        "dry_run": True,
        "occurrence": 1,
        "refire": 0,
        "alert": {
            "labels": {"alertname": "HighMemory", "namespace": "shop", "deployment": "web-1"},
            "annotations": {"summary": "Memory of web-1 is high"},
            "generator_url": "http://prometheus:9090/graph?g0.expr=x",
            "group_key": '{}:{alertname="HighMemory"}',
        },
        # The shipped high-memory rule's steps (rules/high-memory.yaml), float included.
        "steps": [
            step_audit("run", 0, "kubernetes.rollout_restart", "not_run", "refused", {}),
            step_audit(
                "run",
                1,
                "kubernetes.set_resources",
                "not_run",
                "refused",
                {"container": "app", "memory_limit": {"factor": 1.5, "max": "4Gi"}},
            ),
        ],
    }


def _canonical_round() -> tuple[float, float]:
    """CPU µs per row: (``audit_data``, the same with the standard library's ``json`` for
    orjson: the scan for plain data, then ``json.dumps``), one after the other."""
    from receiver.store import canonical

    row = _created_row()
    assert canonical.audit_data(row) == canonical._std_json(row)  # the same text

    def standard() -> None:
        if canonical._plain(row):
            canonical._std_json(row)

    return _cpu_us(lambda: canonical.audit_data(row)), _cpu_us(standard)


def _document_round() -> tuple[float, float]:
    """CPU µs per batch document of ten matched notifications: (``event_json``, the standard
    library's encoder it replaced), one after the other."""
    from bench.loads import notification
    from receiver.alertmanager import parse_notification
    from receiver.intake import events_of
    from receiver.store import event_rows
    from receiver.store.events import _runs

    notifications = [parse_notification(notification(n, matched=True)) for n in range(10)]
    runs = [run for n in notifications for run in _runs(events_of(n))]
    assert event_rows.event_json(runs) == event_rows._std_event_json(runs)  # the same text
    return _cpu_us(lambda: event_rows.event_json(runs)), _cpu_us(
        lambda: event_rows._std_event_json(runs)
    )


def _cpu_us(work: Callable[[], object]) -> float:
    """CPU µs of this process per call of ``work``, over ``_ROWS`` calls."""
    start = time.process_time()
    for _ in range(_ROWS):
        work()
    return (time.process_time() - start) / _ROWS * 1e6


async def _admissions(url: str) -> float:
    """CPU µs per admission of ``_ADMISSIONS``, 16 at a time, after a warm-up."""
    import redis.asyncio

    from receiver.guards.policy import AdmissionRequest, GuardSettings
    from receiver.guards.redis_guards import Guards
    from receiver.model import GuardSpec, NamespacePolicy, Target

    client = redis.asyncio.Redis.from_url(url)
    guards = Guards(client, NamespacePolicy(), GuardSettings(key_prefix=f"micro{time.time()}:"))
    ids = count()
    spec = GuardSpec()

    async def one() -> None:
        i = next(ids)
        target = Target("Deployment", "shop", f"d{i % 1000}")
        await guards.admit(AdmissionRequest(f"run-{i}", "restart", target, True, spec))

    await asyncio.gather(*(one() for _ in range(500)))
    start = time.process_time()
    for _ in range(_ADMISSIONS // 16):
        await asyncio.gather(*(one() for _ in range(16)))
    spent = time.process_time() - start
    await client.aclose()
    return spent / _ADMISSIONS * 1e6


def _child(url: str, hiredis: bool) -> float:
    """One admission round in a fresh interpreter, with or without hiredis importable."""
    block = "" if hiredis else "import sys; sys.modules['hiredis'] = None; "
    code = f"{block}import asyncio, bench.micro as m; print(asyncio.run(m._admissions({url!r})))"
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of each (default 5)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    rows = [_canonical_round() for _ in range(args.rounds)]
    fast, slow = median(r[0] for r in rows), median(r[1] for r in rows)
    print(
        f"audit_data of a refused run.created row: orjson {fast:.1f} µs, json {slow:.1f} µs "
        f"of CPU ({fast / slow:.2f}x)"
    )
    documents = [_document_round() for _ in range(args.rounds)]
    fast, slow = median(r[0] for r in documents), median(r[1] for r in documents)
    print(
        f"intake's document of ten notifications: orjson {fast:.1f} µs, json {slow:.1f} µs "
        f"of CPU ({fast / slow:.2f}x)"
    )
    from receiver.embedded.redis_server import RedisProcess

    with tempfile.TemporaryDirectory(prefix="remediator-micro-") as root:
        server = RedisProcess(Path(root), persistent=False)
        server.start()
        try:
            with_c: list[float] = []
            without: list[float] = []
            for _ in range(args.rounds):
                with_c.append(_child(server.url(), hiredis=True))
                without.append(_child(server.url(), hiredis=False))
        finally:
            server.stop()
    a, b = median(with_c), median(without)
    print(
        f"guard admission, 16 at a time: hiredis {a:.0f} µs, pure Python {b:.0f} µs of CPU "
        f"({a / b:.2f}x)"
    )
    from bench import seal

    (old, old_commit), (new, new_commit) = asyncio.run(seal.compare(1000, 8, args.rounds))
    print(
        f"a refused event's audit rows, 8 events a commit: old seal {old:.0f} µs ({old_commit:.0f}"
        f" at COMMIT), new seal {new:.0f} µs ({new_commit:.0f}) of PostgreSQL CPU "
        f"({new / old:.2f}x; {new_commit / old_commit:.2f}x at COMMIT)"
    )


if __name__ == "__main__":
    main()
