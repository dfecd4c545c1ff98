"""A page of runs on one target: the target's runs alone, newest first, continued by its cursor
(walked down runs_pair_created in the page's order since migration 0028, which made that index
serve both the pages by target and the engine's reads of a (rule, target) pair)."""

from __future__ import annotations

import pytest

from receiver.model import Target
from receiver.store import Store
from tests.support.events import alert_event

pytestmark = pytest.mark.postgres

WEB = Target("Deployment", "shop", "web")
API = Target("Deployment", "shop", "api")


async def test_a_targets_pages_hold_its_runs_of_every_rule_newest_first(store: Store) -> None:
    mine = []
    for i in range(7):
        for rule in ("restart", "scale"):
            for target in (WEB, API):
                run_id = await store.create_run(
                    rule=rule,
                    event=alert_event(fingerprint=f"{i:08x}{target.name:0>8}"),
                    target=target,
                    dry_run=True,
                )
                assert run_id is not None
                if target == WEB:
                    mine.append(run_id)

    pages, cursor = [], None
    while True:
        rows, cursor = await store.list_runs(target=WEB.key, limit=5, cursor=cursor)
        pages.append([r.id for r in rows])
        if cursor is None:
            break
    assert [len(p) for p in pages] == [5, 5, 4]
    assert [i for p in pages for i in p] == list(reversed(mine))

    rows, _ = await store.list_runs(target=WEB.key, rule="scale", limit=100)
    assert [r.id for r in rows] == list(reversed(mine[1::2]))
