"""A rules reload that removes a rule reads that rule's open runs (``EngineHistory.open_runs``):
the read takes the open ones, not every run the rule ever had. It walked the rule's runs whose
alert had not resolved and filtered out those that ended without acting: the refused runs of an
alert whose resolution never came (a storm's, silenced) were read, all of them, on every such
reload. Counted here in the plan PostgreSQL ran (migration 0041)."""

from __future__ import annotations

import json

import pytest

from receiver.model import RunOutcome, Target
from receiver.store import Store
from receiver.store.history import OPEN_RUNS_SQL
from tests.support.events import alert_event
from tests.support.plans import explain_analyze, rows_read

pytestmark = pytest.mark.postgres

# Copies of each finished run: enough runs that PostgreSQL does not read the table whole.
COPIES = 5000


async def test_the_open_runs_of_a_removed_rule_are_read_without_its_finished_ones(
    store: Store,
) -> None:
    web = Target("Deployment", "shop", "web")
    made = {}
    for i, outcome in enumerate(
        (RunOutcome.REFUSED, RunOutcome.SUCCEEDED, RunOutcome.SUCCEEDED, RunOutcome.VERIFYING)
    ):
        made[i] = await store.create_run(
            rule="gone",
            event=alert_event(i + 1, f"{i:016x}"),
            target=web,
            dry_run=False,
            outcome=outcome,
        )
    # Finished: the refused run (a storm's, of an alert whose resolution never came: open for
    # good, with nothing to undo) and a run whose alert resolved, each copied COPIES times.
    await store._pool.execute("UPDATE runs SET resolved_at = now() WHERE id = $1", made[1])
    await store._pool.execute(
        """INSERT INTO runs
           SELECT (jsonb_populate_record(NULL::runs, to_jsonb(r) || jsonb_build_object(
                       'id', gen_random_uuid(), 'fingerprint', r.fingerprint || '-' || g))).*
           FROM runs r, generate_series(1, $2) g WHERE r.id = ANY($1::uuid[])""",
        [made[0], made[1]],
        COPIES,
    )
    await store._pool.execute("VACUUM ANALYZE runs")
    async with store._pool.acquire() as conn:
        plan = await explain_analyze(conn, OPEN_RUNS_SQL, ["gone"], 100)
    # The two open runs that acted, and none of the rule's finished ones.
    assert rows_read(plan, "runs") <= 2, json.dumps(plan, indent=1)
    assert [r.run_id for r in await store.open_runs(["gone"])] == [made[2], made[3]]
