"""The audit rows of rules reloads are written in the order of the reloads.

Each reload's row is written by a task of its own; two appends in flight may commit in either
order, and the reviewer would read an older reload's errors as the last word on the rules (the
clean-clone CI at 558860c caught the integration test of failed reloads reading them so).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog

from receiver.reloads import RuleReloads
from receiver.rules.loader import RuleHolder
from tests.support.rules import GOOD, POLICY, registry


async def test_a_slower_first_append_is_still_recorded_first(tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(GOOD)
    holder = RuleHolder(rules_dir, registry(), POLICY)
    committed: list[tuple[str, Any]] = []

    async def audit(kind: str, *, data: dict[str, Any]) -> None:
        # The first append is the slower one: it yields to the loop a few times before it
        # commits, as a round trip to the store would.
        if not committed and not getattr(audit, "slowed", False):
            audit.slowed = True  # type: ignore[attr-defined]
            for _ in range(5):
                await asyncio.sleep(0)
        committed.append((kind, data))

    reloads = RuleReloads(holder, structlog.get_logger("test"), audit, asyncio.get_running_loop())
    (rules_dir / "rules.yaml").write_text("rules: [{name: first}]")
    reloads(holder.reload())
    (rules_dir / "rules.yaml").write_text("rules: [{name: second}]")
    reloads(holder.reload())
    (rules_dir / "rules.yaml").write_text(GOOD)
    reloads(holder.reload())
    await reloads.drain()

    kinds = [kind for kind, _ in committed]
    assert kinds == ["rules.reload_failed", "rules.reload_failed", "rules.reloaded"]
    assert "'first'" in committed[0][1]["errors"][0]
    assert "'second'" in committed[1][1]["errors"][0]
