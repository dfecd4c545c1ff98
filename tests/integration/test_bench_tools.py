"""The README's side benches run to their figures: ``python -m bench.micro``, ``bench.seal`` in
each of its modes and ``bench.history_reads``, each at a tiny size on the PostgreSQL and Redis
of the wheels they start themselves. Nothing else runs them: two of them had failed since a
migration changed what they measure against (the audit queue's columns at 0040, the history
read's parameters), and only running them says so."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bench import history_reads, seal
from receiver.embedded import EmbeddedError, postgres_bin_dir
from tests.support.servers import server_missing

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _wheel_postgres() -> None:
    try:
        postgres_bin_dir()
    except EmbeddedError as exc:
        server_missing(f"embedded PostgreSQL ({exc})")


@pytest.mark.parametrize("mode", ["seal", "folded", "queue"])
async def test_seal_compares_both_sides_and_both_chains_verify(
    mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (old, old_commit), (new, new_commit) = await seal.compare(16, 8, 1, mode=mode)
    printed = capsys.readouterr().out
    assert min(old, old_commit, new, new_commit) > 0, printed
    assert "chain verifies: True" in printed
    assert "chain verifies: False" not in printed


async def test_history_reads_finds_the_same_rows_both_ways(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = argparse.Namespace(
        stored=400, targets=20, storm=60, reads=32, turns=1, explain=True, held=True
    )
    await history_reads.run(args)  # raises when the two reads find different rows
    printed = capsys.readouterr().out
    assert "-- batch_history" in printed
    assert "-- old_history" in printed
    for batch in (" 8", "16"):
        old_line, new_line = (
            line for line in printed.splitlines() if line.startswith(f"batch {batch} turn 0 ")
        )
        # Both reads found rows, the same number (the storm's runs of the seed's targets).
        assert old_line.split(", ")[-1] == new_line.split(", ")[-1] != "0 rows"
        assert f"batch {batch} median backend: old " in printed


def test_micro_prints_each_of_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.micro", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for start in (
        "machine: ",
        "audit_data of a refused run.created row: orjson ",
        "intake's document of ten notifications: orjson ",
        "guard admission, 16 at a time: hiredis ",
        "a refused event's audit rows, 8 events a commit: old seal ",
    ):
        assert any(line.startswith(start) for line in lines), (start, done.stdout)
