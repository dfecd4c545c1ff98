"""make bench's figures: percentiles, the targets' verdicts, and the CPU of one process tree
(a child that has exited and been reaped still counts; nothing outside the tree does)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import (
    against,
    cpu_seconds,
    describe_machine,
    flush_latency_ms,
    machine_ticks,
    median,
    percentile,
    tree,
    tree_cpu_seconds,
    where_the_cores_went,
)
from bench.storm_figures import Acted, acted, poll_interval_s


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0) == 1
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile([30.0, 10.0, 20.0], 50) == 20
    assert math.isnan(percentile([], 50))


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert math.isnan(median([]))


@pytest.mark.parametrize(
    ("value", "target", "above", "expected"),
    [
        (9.1, 10.0, False, "9.10 s (target < 10 s: 0.91x, met)"),
        (22.6, 10.0, False, "22.6 s (target < 10 s: 2.26x, not met)"),
        (10.0, 10.0, False, "10.0 s (target < 10 s: 1.00x, not met)"),
        (0.52, 0.5, True, "0.52 s (target >= 0.5 s: 1.04x, met)"),
        (0.41, 0.5, True, "0.41 s (target >= 0.5 s: 0.82x, not met)"),
        (math.nan, 10.0, False, "not measured (target < 10 s)"),
    ],
)
def test_against_a_target(value: float, target: float, above: bool, expected: str) -> None:
    assert against(value, target, "s", above=above) == expected


def test_an_action_is_timed_to_its_commit_and_to_the_time_written() -> None:
    # The commit is when the action became visible; the time written in the row (its
    # transaction's start) is earlier by the write's own duration.
    posted = {"a": 1000.0, "b": 1000.5}
    rows = [("a", 1000.0169, 1000.0263, "refused by rate"), ("b", 1000.6, None, "dry_run")]
    timed = acted(rows, posted)
    assert isinstance(timed["a"], Acted)
    assert timed["a"].committed_ms == pytest.approx(26.3)
    assert timed["a"].written_ms == pytest.approx(16.9)
    assert timed["a"].what == "refused by rate"
    # No commit time (PostgreSQL not tracking them): NaN, never the written time instead.
    assert math.isnan(timed["b"].committed_ms)
    assert timed["b"].written_ms == pytest.approx(100.0)
    assert timed["b"].what == "dry_run"


def test_the_queue_is_counted_often_near_the_end_only() -> None:
    assert poll_interval_s(1) == pytest.approx(0.0201)
    assert poll_interval_s(10_000) == 1.0
    assert poll_interval_s(1_000_000) == 1.0


# A child that spends 0.3 s of CPU, says so, and stays alive until its stdin closes.
_BURN = (
    "import sys, time\n"
    "t = time.process_time()\n"
    "while time.process_time() - t < 0.3:\n"
    "    pass\n"
    "print('burnt', flush=True)\n"
    "sys.stdin.read()\n"
)
# A parent that runs that child to its end (the child's stdin closed at once) and waits for it,
# which reaps it; then says so and stays alive until its own stdin closes.
_REAPS = (
    "import subprocess, sys\n"
    f"subprocess.run([sys.executable, '-c', {_BURN!r}], input=b'', capture_output=True,"
    " check=True)\n"
    "print('reaped', flush=True)\n"
    "sys.stdin.read()\n"
)
# A parent whose child is still running once it has burnt its CPU (its stdin is the parent's:
# it ends with the parent).
_KEEPS = (
    "import subprocess, sys\n"
    f"child = subprocess.Popen([sys.executable, '-c', {_BURN!r}], stdout=subprocess.PIPE)\n"
    "child.stdout.readline()\n"
    "print('burnt', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.fixture
def parent(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", request.param],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        proc.stdout.readline()  # the child has spent its CPU
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(30)


@pytest.mark.parametrize("parent", [_REAPS, _KEEPS], indirect=True, ids=["reaped", "running"])
def test_tree_cpu_counts_the_children_exited_or_not(parent: subprocess.Popen[str]) -> None:
    assert cpu_seconds(parent.pid) < 0.3  # the parent itself did not spend it
    assert tree_cpu_seconds(parent.pid) >= 0.29  # one clock tick of rounding


@pytest.mark.parametrize("parent", [_KEEPS], indirect=True)
def test_tree_is_the_process_and_its_descendants_only(parent: subprocess.Popen[str]) -> None:
    members = tree(parent.pid)
    assert members[0] == parent.pid
    assert len(members) == 2
    assert os.getpid() not in members


def test_the_machine_line_tells_hosts_of_one_model_name_apart() -> None:
    # Under KVM two hosts of different generations both say "AMD EPYC"; the family, the model
    # and the clock of the first processor tell them apart.
    cpuinfo = (
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\n"
        "model name\t: AMD EPYC\ncpu MHz\t\t: 2596.120\n\n"
        "processor\t: 1\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: other\n"
    )
    line = describe_machine(cpuinfo, "MemTotal:       24641536 kB\n")
    assert line.startswith("AMD EPYC (family 26, model 2, 2596 MHz), ")
    assert "23.5 GiB RAM" in line
    # An ARM kernel's cpuinfo has neither a model name nor a clock.
    arm = describe_machine(
        "processor\t: 0\nBogoMIPS\t: 50.00\nCPU part\t: 0xd0c\n", "MemTotal: 1048576 kB"
    )
    assert arm.startswith("unknown cpu, ")


def test_the_flush_probe_times_each_write_and_leaves_nothing(tmp_path: Path) -> None:
    p50, p99 = flush_latency_ms(tmp_path, count=20, size=4096)
    assert 0 < p50 <= p99
    assert list(tmp_path.iterdir()) == []


def test_where_the_cores_went_splits_the_machine_by_who_used_it() -> None:
    # 1,000 ticks over the interval: 600 busy (100 of them system), 300 idle, 50 on the disk,
    # 50 stolen; the bench's processes used 4 of them, in seconds at the kernel's tick rate.
    hz = os.sysconf("SC_CLK_TCK")
    line = where_the_cores_went((480, 20, 90, 300, 50, 5, 5, 50), 400 / hz)
    assert line == (
        "this bench's processes 40%, other processes 20%, idle 30%, waiting on the disk 5%,"
        " steal 5%"
    )
    now = machine_ticks()
    assert len(now) == 8
    assert all(a <= b for a, b in zip(now, machine_ticks(), strict=True))
