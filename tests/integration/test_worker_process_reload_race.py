"""A rules reload that reaches a busy worker process late: the process reloads the rules
``serve`` reloaded, not the rule files as they are when it gets to it (receiver/processes/).

A real ``serve`` with ``worker.processes`` 2 on the test PostgreSQL and Redis; its worker
process is held (SIGSTOP, a process busy past the moment) while the rule files change twice.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.support.polling import current, eventually
from tests.support.worker_processes import lines, served

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

FAILED = "rule reload failed; keeping the last good rules"


async def test_a_late_reload_takes_serve_s_rules_not_a_typo_pushed_since(
    embedded_dir: Path, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    async with served(embedded_dir, tmp_path, database_url, redis_url) as running:
        output = running.output
        child = await running.worker_process()
        os.kill(child, signal.SIGSTOP)
        try:
            # A rule removed: serve reloads, and passes the reload on to a process that
            # cannot act on it yet.
            (running.rules / "other.yaml").unlink()
            await eventually(
                current(lambda: [r for r in lines(output, "rules reloaded") if "process" not in r]),
                what="serve reloading without rule other-calls",
            )
            # Then a typo, before the process got to its reload. Written whole (a dot-file is
            # not read), so that one reload of serve's sees it.
            (running.rules / ".typo.yaml").write_text("rules: [ {name: broken\n")
            (running.rules / ".typo.yaml").rename(running.rules / "typo.yaml")
        finally:
            os.kill(child, signal.SIGCONT)
        # The process reloaded serve's rules (without other-calls) each time, the reload after
        # serve's failed one included: on main it read the directory, failed on the typo, and
        # went on running other-calls, which serve no longer ran, until the next good reload.
        said = await eventually(
            current(lambda: _reloads_of_worker_1(output)),
            lambda said: bool(said) and said[-1][1],
            what="worker-1 reloading after serve failed the typo",
        )
        assert {event for event, _ in said} == {"rules reloaded"}, said


def _reloads_of_worker_1(output: list[str]) -> list[tuple[str, bool]]:
    """worker-1's reloads so far, in order: the event it said (reloaded, or failed), and
    whether that came after serve's failed reload."""
    outcomes, after = [], False
    for line in list(output):
        if not line.startswith("{"):
            continue
        record = json.loads(line)
        if record.get("event") == FAILED and "process" not in record:
            after = True
        elif record.get("event") in ("rules reloaded", FAILED) and "process" in record:
            outcomes.append((record["event"], after))
    return outcomes
