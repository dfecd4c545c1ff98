"""A run whose step a worker stopped in (``interrupted``: it may have acted) and its alert
resolving: the run's on_resolved steps are planned as for a run that changed something, and
their record says that the change they undo may not have happened.

Worker A acts and dies before recording the step; worker B takes the event up and records the
step interrupted (test_step_crash.py). Then the alert resolves, through intake and the worker's
drain, as in production.
"""

from __future__ import annotations

import pytest

from receiver.model import RunOutcome
from remediations.base import Outcome
from tests.integration.test_step_crash import (
    DEPLOYMENT,
    LABELS,
    Count,
    SafeCount,
    _crash_then_take_up,
    _rule,
)
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ON_RESOLVED = """    on_resolved:
      - action: test.safe_count
        params: {}
"""


async def _resolve(h: Harness) -> None:
    """The firing event's claim ends (worker B's drain completes it), then the alert resolves."""
    run = await h.only_run()
    assert run.event_id is not None
    event = await h.store.get_event(run.event_id)
    assert event is not None
    assert await h.store.complete_event(run.event_id, "worker-b", event["attempts"])
    await h.intake.accept(notification(alert(LABELS, status="resolved")))
    await h.drain()
    assert await h.store.queue_depth() == 0


async def test_an_interrupted_step_gets_its_undo_saying_the_change_may_not_have_happened(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    count, undo = Count(), SafeCount()
    rules = _rule("test.count", on_resolved=ON_RESOLVED).replace("TARGET", DEPLOYMENT)
    h = await make_harness(rules, dry_run=False, extra_actions=[count, undo])
    run = await _crash_then_take_up(h, monkeypatch, "test.count", LABELS)
    assert [s.outcome for s in run.steps] == [Outcome.INTERRUPTED]

    await _resolve(h)

    assert undo.calls == 1  # the interrupted step did act: its undo ran
    run = await h.only_run()
    assert run.outcome is RunOutcome.FAILED  # a follow-up never changes the run's outcome
    assert run.resolved_at is not None
    (resolve,) = [s for s in run.steps if s.phase == "resolve"]
    assert resolve.outcome == Outcome.OK
    assert resolve.message.startswith("counted to 1; ")
    assert "run step 0 (test.count) was interrupted" in resolve.message
    assert "the change this step undoes may not have happened" in resolve.message
    trail = [
        e["data"]["message"]
        for e in await h.store.audit_entries(run.id)
        if e["kind"] == "step" and e["data"]["phase"] == "resolve" and e["data"]["outcome"] == "ok"
    ]
    assert trail == [resolve.message]  # the audit log says it too
