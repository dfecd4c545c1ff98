"""A step's waits for its system on its run's timeline (receiver/review/waits.py; pure).

The end-to-end case, a marked step's tries through the pipeline and the review's loader, is
tests/integration/test_unreachable_marked.py; these are the edges: two waits of one step, a
mark that acted, another step's rows between, a row that cannot be read.
"""

from __future__ import annotations

from receiver.review.model import AuditEntry
from receiver.review.timeline import run_timeline
from receiver.review.waits import RETRIED, WAIT, fold_waits
from tests.unit.review_records import at, run


def _audit(*rows: tuple[float, str, dict[str, object]]) -> list[AuditEntry]:
    return [
        AuditEntry(i + 1, at(minute), kind, data) for i, (minute, kind, data) in enumerate(rows)
    ]


def _mark(minute: float, idx: int = 0) -> tuple[float, str, dict[str, object]]:
    return minute, "step", {"phase": "run", "idx": idx, "action": "http.call", "outcome": "started"}


def _deferred(minute: float, tries: int, idx: int = 0) -> tuple[float, str, dict[str, object]]:
    data: dict[str, object] = {
        "phase": "run",
        "idx": idx,
        "action": "http.call",
        "message": f"waiting for its system: http could not be reached ({tries} tries)",
        "tries": tries,
    }
    return minute, "step.deferred", data


def _end(minute: float, outcome: str, idx: int = 0) -> tuple[float, str, dict[str, object]]:
    return minute, "step", {"phase": "run", "idx": idx, "action": "http.call", "outcome": outcome}


def test_two_waits_of_one_step_are_two_entries_and_the_mark_that_acted_stays() -> None:
    trail = _audit(
        (0, "run.created", {"dry_run": False}),
        _mark(1),
        _deferred(1, 1),
        _mark(2),
        _deferred(2, 2),
        # Asked for its approval meanwhile: a wait that comes after it is another.
        _end(3, "awaiting_approval"),
        _mark(4),
        _deferred(4, 1),
        _mark(5),
        _end(5, "ok"),
    )
    shown = fold_waits(trail)
    assert [r.id for r in shown] == [1, 3, 6, 8, 9, 10]
    assert shown[1].data[WAIT] == {
        "deferrals": 2,
        "tries": 2,
        "since": at(1),
        "last": at(2),
        "marks": 2,
    }
    assert shown[1].data["message"].endswith("(2 tries)")
    titles = [e.title for e in run_timeline(run(0, audit=trail))]
    assert [t for t in titles if t.startswith("Step 1")] == [
        "Step 1 (http.call) waits for its system: 2 tries since 2026-11-25 10:01:00 UTC, "
        "the last at 2026-11-25 10:02:00 UTC",
        "Step 1 (http.call) waits for an engineer's approval",
        "Step 1 (http.call) waits for its system",
        "Step 1: http.call started",
        "Step 1: http.call ok",
    ]


def test_another_steps_rows_do_not_break_a_wait_and_an_unreadable_row_stays() -> None:
    trail = [
        *_audit(
            _deferred(1, 1, idx=1),
            _end(1.5, "ok", idx=0),
            _deferred(2, 2, idx=1),
        ),
        AuditEntry(4, at(3), "step.deferred", {}, unreadable="edited"),
    ]
    shown = fold_waits(trail)
    assert [r.id for r in shown] == [1, 2, 4]
    assert shown[0].data[WAIT]["deferrals"] == 2
    assert shown[0].data[WAIT]["marks"] == 0


def _admitted(
    minute: float, guards: list[str], phase: str = "run"
) -> tuple[float, str, dict[str, object]]:
    return minute, "run.admitted", {"phase": phase, "guards": guards}


def test_a_waits_retries_admissions_are_one_entry_and_a_refusal_or_other_guards_begin_another() -> (
    None
):
    lock = ["pause", "lock"]
    trail = _audit(
        _admitted(0, lock),  # the first try's: stays
        _deferred(0, 1),
        _admitted(1, lock),  # the retries': one entry
        _admitted(2, lock),
        (2.5, "run.refused", {"phase": "run", "guard": "pause"}),
        _admitted(3, lock),  # after a refusal: a new entry
        _admitted(4, ["pause"]),  # other guards: another entry
        _admitted(4.5, lock, phase="resolve"),  # another phase waits for nothing
        _end(5, "ok"),
        _admitted(6, lock),  # after the step's end: as ever
    )
    shown = fold_waits(trail)
    assert [r.id for r in shown] == [1, 2, 3, 5, 6, 7, 8, 9, 10]
    assert shown[2].data[RETRIED] == {"tries": 2, "last": at(2), "phase": "run", "idx": 0}
    assert shown[4].data[RETRIED]["tries"] == 1
    assert shown[5].data[RETRIED] == {"tries": 1, "last": at(4), "phase": "run", "idx": 0}
    assert RETRIED not in shown[0].data
    assert RETRIED not in shown[6].data
    assert RETRIED not in shown[8].data
    titles = [e.title for e in run_timeline(run(0, audit=trail))]
    assert [t for t in titles if t.startswith("Guards passed")] == [
        "Guards passed: pause, lock",
        "Guards passed: pause, lock, again for each retry of step 1 waiting for its system: "
        "tried 2 times, the last at 2026-11-25 10:02:00 UTC",
        "Guards passed: pause, lock, again for each retry of step 1 waiting for its system: "
        "tried 1 time, the last at 2026-11-25 10:03:00 UTC",
        "Guards passed: pause, again for each retry of step 1 waiting for its system: "
        "tried 1 time, the last at 2026-11-25 10:04:00 UTC",
        "Guards passed (on_resolved steps): pause, lock",
        "Guards passed: pause, lock",
    ]
