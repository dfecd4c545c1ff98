"""Which on_resolved step stopped a run's undo, and what the announcement says about it
(``receiver.pipeline.undo``). Pure logic: the pipeline around it is tested end to end in
tests/integration/test_undo_announced.py."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from receiver.model import StepPlan
from receiver.pipeline.marked import UNRECORDED
from receiver.pipeline.undo import StoppedUndo, caveat, stopped_undo, undo_failed_text
from receiver.store import RunRecord, StepRecord
from receiver.store.steps import ENDED_WHILE_STARTED
from remediations.base import Outcome, Result
from remediations.targets import Target
from tests.support.run_records import failed_run

# The outcomes a step of an undo ends with; refused, failed and interrupted stop it.
ENDED = ["ok", "noop", "dry_run", "refused", "failed", "interrupted"]
STOPPING = {"refused", "failed", "interrupted"}


def record(
    idx: int,
    outcome: str,
    *,
    phase: str = "resolve",
    action: str = "kubernetes.scale",
    message: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> StepRecord:
    return StepRecord(
        run_id="r",
        phase=phase,
        idx=idx,
        action=action,
        params={},
        needs_approval=False,
        outcome=outcome,
        message=message,
        before=before,
        after=after,
        attempts=1,
        started_at=None,
        finished_at=None,
    )


def result(idx: int, outcome: str) -> tuple[StepPlan, Result]:
    plan = StepPlan(index=idx, action=f"action.{idx}", params={}, needs_approval=False)
    return plan, Result(Outcome(outcome), f"step {idx} {outcome}")


@given(st.lists(st.sampled_from(ENDED), max_size=6))
def test_the_first_step_of_the_pass_that_stops_is_named(outcomes: list[str]) -> None:
    results = [result(i, o) for i, o in enumerate(outcomes)]
    stopped = stopped_undo(results)
    first = next((i for i, o in enumerate(outcomes) if o in STOPPING), None)
    if first is None:
        assert stopped is None
    else:
        assert stopped == StoppedUndo(
            first, f"action.{first}", outcomes[first], f"step {first} {outcomes[first]}"
        )


@given(
    st.lists(st.sampled_from([*ENDED, "pending", "awaiting_approval", "not_run"]), max_size=6),
    st.sampled_from(["run", "on_failed"]),
)
def test_a_stored_stop_is_found_only_among_the_undos_steps(
    outcomes: list[str], other_phase: str
) -> None:
    # A run step or an escalation step that failed is no undo's: it never names one.
    stored = [record(i, o, phase=other_phase) for i, o in enumerate(outcomes)]
    assert stopped_undo([], stored) is None
    stored += [record(len(outcomes) + i, o) for i, o in enumerate(reversed(outcomes))]
    stops = [s for s in stored if s.phase == "resolve" and s.outcome in STOPPING]
    found = stopped_undo([], reversed(stored))
    assert (found.index if found else None) == (stops[0].idx if stops else None)


def test_this_pass_comes_before_what_was_stored() -> None:
    stopped = stopped_undo([result(3, "failed")], [record(2, "refused")])
    assert stopped is not None
    assert (stopped.index, stopped.outcome) == (3, "failed")


def test_the_text_names_the_step_why_the_change_and_the_target() -> None:
    steps = [
        record(0, "ok", phase="run", before={"replicas": 4}, after={"replicas": 6}),
        record(1, "refused"),
    ]
    stopped = StoppedUndo(1, "kubernetes.scale", "refused", "live count 12 is not the 6 set")
    text = undo_failed_text(stopped, steps, "Deployment/shop/workers")
    assert text == (
        "The undo did not happen: on_resolved step kubernetes.scale (step 1 of the run) was "
        "refused: live count 12 is not the 6 set. What the run changed was not taken back: "
        'kubernetes.scale {"replicas": 4} → {"replicas": 6}. Check Deployment/shop/workers: '
        "decide whether that change should stay, and take it back by hand if not; remediator "
        "will not try again."
    )


def test_an_interrupted_undo_and_a_change_that_may_not_have_happened_say_so() -> None:
    stopped = StoppedUndo(1, "http.call", "interrupted", "")
    caveat = "planned because run step 0 (http.call) was interrupted"
    text = undo_failed_text(stopped, [record(0, "interrupted", phase="run")], "Service/x", caveat)
    assert "(step 1 of the run) was interrupted (a worker stopped while it ran" in text
    assert "What the run's steps changed was not taken back." in text
    assert f"(The undo was {caveat}.)" in text


@given(st.text(min_size=0, max_size=600))
def test_a_long_change_is_cut_and_the_text_still_ends_with_what_to_check(value: str) -> None:
    steps = [record(0, "ok", phase="run", before={"v": value}, after={"v": value + "!"})]
    stopped = StoppedUndo(1, "kubernetes.scale", "failed", "boom")
    text = undo_failed_text(stopped, steps, "Deployment/a/b")
    assert len(text) < 800
    assert text.endswith("remediator will not try again.")


# How an interrupted step's message reads when the store lost its record in the process that
# ran it (``marked.not_started``): no worker stopped.
LOST = (
    f"{UNRECORDED} (its call had ended ok: counted to 1); not run again, so as not to act "
    "twice or go past its cap; check Deployment/shop/web by hand"
)


def run_of(*steps: StepRecord) -> RunRecord:
    return failed_run("poke", Target("Deployment", "shop", "web"), *steps)


def test_an_undo_stopped_by_a_lost_record_says_so_not_a_stopped_worker() -> None:
    """Before, every interrupted step read "a worker stopped while it ran", although its own
    message said the store lost its record and no worker stopped."""
    stopped = StoppedUndo(1, "test.count", "interrupted", LOST)
    text = undo_failed_text(stopped, [record(0, "ok", phase="run")], "Deployment/shop/web")
    assert "a worker stopped" not in text
    assert (
        "(step 1 of the run) was interrupted (the store was unreachable when its result was to "
        "be recorded, not a stopped worker; its message says how its call ended): " + LOST
    ) in text


def test_the_undo_of_a_run_step_whose_record_was_lost_says_so_not_a_stopped_worker() -> None:
    text = caveat(run_of(record(0, "interrupted", phase="run", action="test.count", message=LOST)))
    assert text.startswith(
        "planned because run step 0 (test.count) was interrupted: the store was unreachable "
        "when its result was to be recorded, not a stopped worker"
    ), text
    assert "a worker stopped" not in text


def test_the_undo_of_a_run_step_a_worker_stopped_in_still_says_so() -> None:
    stopped_in = "a worker stopped while this step ran (started by a): it may have acted"
    text = caveat(run_of(record(0, "interrupted", phase="run", message=stopped_in)))
    assert "was interrupted: a worker stopped while it ran" in text
    # Still started: no result recorded, for whichever reason; neither is guessed.
    text = caveat(run_of(record(0, "started", phase="run", message="started by a")))
    assert "was interrupted: its result was never recorded (its worker stopped, or the store" in (
        text
    )


def test_the_undo_of_a_run_step_its_run_ended_while_started_guesses_no_reason() -> None:
    # Its run ended with it still started (mark_not_run): a stopped worker and a result lost to
    # a store outage read the same, and the caveat said "a worker stopped while it ran".
    ended = ENDED_WHILE_STARTED + "started by a; not run: the run ended cancelled"
    text = caveat(run_of(record(0, "interrupted", phase="run", message=ended)))
    assert "was interrupted: its result was never recorded (its worker stopped, or the store" in (
        text
    )
    assert "a worker stopped while it ran" not in text
