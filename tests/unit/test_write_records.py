"""Write records (remediations.kubernetes.replay): slots, the previous key form, round trip,
bounds. Pure."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from remediations.kubernetes.replay import (
    FRESH_RECORDS,
    MAX_RECORD_BYTES,
    MAX_RECORDS,
    SCALE_ACTION,
    SLOT_KEYS,
    WRITE_PREFIX,
    StepId,
    WriteRecord,
    find_record,
    needs,
    record_annotations,
    records_of,
)


def record(at: str, run: str = "r", step: int = 0, action: str = "kubernetes.scale") -> WriteRecord:
    change = {"summary": "s", "before": {"replicas": 2}, "after": {"replicas": 4}}
    return WriteRecord(action, change, {"replicas": 4}, run, "run", step, {}, at)


def obj(annotations: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"annotations": annotations}}


def apply(annotations: dict[str, str], patch: dict[str, str | None]) -> dict[str, str]:
    """A JSON merge patch of the annotations, as the API server applies it."""
    out = dict(annotations)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def test_the_previous_key_form_names_run_phase_and_step_and_stays_a_valid_annotation_name() -> None:
    run = "0b5f2c1e-8a7d-4c1b-9a55-3c2d1e0f9a8b"
    assert StepId(run, "resolve", 3).legacy_key() == f"{WRITE_PREFIX}{run}.resolve.3"
    assert StepId.of(run, "run", None) is None
    long = StepId("x" * 80, "on_failed", 12).legacy_key()
    assert len(long.removeprefix(WRITE_PREFIX)) == 40
    assert long != StepId("x" * 80, "on_failed", 13).legacy_key()


def test_a_record_is_found_only_for_its_step_and_action_in_a_slot_or_its_previous_key() -> None:
    slot = obj({SLOT_KEYS[3]: record("t").to_json(), f"{WRITE_PREFIX}x": "{bad"})
    # The previous version's record: found by its key even without the step in its value.
    legacy = obj({StepId("r", "run", 0).legacy_key(): record("t", run="", step=9).to_json()})
    for o in (slot, legacy):
        found = find_record(o, StepId("r", "run", 0), "kubernetes.scale")
        assert found is not None
        assert found.after == {"replicas": 4}
        assert find_record(o, StepId("r", "run", 0), "kubernetes.set_env") is None
        assert find_record(o, StepId("r", "run", 1), "kubernetes.scale") is None
        assert find_record(o, None, "kubernetes.scale") is None


def test_with_every_slot_taken_the_oldest_records_slot_is_reused() -> None:
    full = {
        k: record(f"2026-01-01T00:00:{i:02d}Z", run=f"r{i}").to_json()
        for i, k in enumerate(SLOT_KEYS)
    }
    full[SLOT_KEYS[5]] = record("2025-12-31T00:00:00Z", run="oldest").to_json()
    patch = record_annotations(obj(full), record("2026-02-01T00:00:00Z", run="new"))
    assert patch == {SLOT_KEYS[5]: record("2026-02-01T00:00:00Z", run="new").to_json()}


def test_records_in_per_step_keys_move_into_slots_and_their_keys_are_removed() -> None:
    legacy = {
        StepId(f"old{i}", "run", 0).legacy_key(): record(
            f"2026-01-01T00:00:{i:02d}Z", f"old{i}"
        ).to_json()
        for i in range(10)
    }
    legacy[f"{WRITE_PREFIX}junk"] = "{bad"
    after = apply(legacy, record_annotations(obj(legacy), record("2026-02-01T00:00:00Z", "new")))
    assert set(after) <= set(SLOT_KEYS)
    # The new record and the newest MAX_RECORDS - 1 of the old: old0 .. old2 go.
    runs = {r.run_id for r in records_of(obj(after)).values()}
    assert runs == {"new"} | {f"old{i}" for i in range(10 - (MAX_RECORDS - 1), 10)}


# One write: (its time, its step's run, a record's size). Times may repeat and go backwards
# (clocks of several replicas); runs repeat (a run's several steps).
writes = st.lists(
    st.tuples(st.integers(0, 50), st.integers(0, 5), st.sampled_from([10, 1000, 40_000])),
    min_size=1,
    max_size=40,
)


@given(writes, st.integers(0, 12))
def test_record_keys_stay_bounded_however_many_writes(
    sequence: list[tuple[int, int, int]], legacy_count: int
) -> None:
    """Every write: its record is on the object afterwards, only slot keys are left, and the
    records kept are within the caps. A ReplicaSet that gets every key of the Deployment and
    never loses one (the controller's copy) ends with the slot keys and the per-step keys it
    started with, whatever the number of writes."""
    annotations = {
        StepId(f"legacy{i}", "run", 0).legacy_key(): record(f"2026-01-01T00:00:{i:02d}Z").to_json()
        for i in range(legacy_count)
    }
    replica_set = dict(annotations)
    for n, (second, run, size) in enumerate(sequence):
        new = WriteRecord(
            "kubernetes.set_env",
            {"summary": "x" * size},
            {},
            f"run{run}",
            "run",
            n,
            {},
            f"2026-01-02T00:00:{second:02d}.000000Z",
        )
        annotations = apply(annotations, record_annotations(obj(annotations), new))
        replica_set.update(annotations)
        assert find_record(obj(annotations), StepId(f"run{run}", "run", n), new.action) == new
        assert set(annotations) <= set(SLOT_KEYS)
        assert sum(len(k) + len(v) for k, v in annotations.items()) <= max(
            MAX_RECORD_BYTES, len(SLOT_KEYS[0]) + len(new.to_json())
        )
    assert len(set(replica_set) - set(SLOT_KEYS)) == legacy_count


@given(st.permutations(list(range(12))))
def test_the_newest_records_are_kept_in_whatever_order_they_were_written(order: list[int]) -> None:
    """Small records: the ``MAX_RECORDS`` newest by their time stay, whatever the order the
    writes came in, and the one written last, however old, as this step's record."""
    annotations: dict[str, str] = {}
    for i in order[:-1]:
        new = record(f"2026-01-01T00:00:{i:02d}Z", run=f"r{i}")
        annotations = apply(annotations, record_annotations(obj(annotations), new))
    last = record(f"2026-01-01T00:00:{order[-1]:02d}Z", run=f"r{order[-1]}")
    annotations = apply(annotations, record_annotations(obj(annotations), last))
    runs = {r.run_id for r in records_of(obj(annotations)).values()}
    newest_others = sorted(set(order) - {order[-1]})[-(MAX_RECORDS - 1) :]
    assert runs == {f"r{order[-1]}"} | {f"r{i}" for i in newest_others}


def write(
    annotations: dict[str, str],
    run: str,
    phase: str,
    second: int,
    action: str = SCALE_ACTION,
    restore: bool = False,
) -> dict[str, str]:
    """``annotations`` after a step of ``run`` writes its record at ``second``."""
    new = WriteRecord(
        action,
        {"summary": "s"},
        {},
        run,
        phase,
        1 if phase == "resolve" else 0,
        {"restore": True} if restore else {},
        f"2026-01-01T00:{second // 60:02d}:{second % 60:02d}.000000Z",
    )
    return apply(annotations, record_annotations(obj(annotations), new))


def test_an_open_runs_scale_record_outlasts_other_runs_that_scaled_and_restored() -> None:
    """Run A scales out; four later runs each scale and restore (8 writes): A's scale record
    is still there for A's restore, which refuses without it. The closed runs' records go."""
    annotations = write({}, "a", "run", 0)
    for i in range(4):
        annotations = write(annotations, f"b{i}", "run", 1 + 2 * i)
        annotations = write(annotations, f"b{i}", "resolve", 2 + 2 * i, restore=True)
    records = records_of(obj(annotations)).values()
    assert ("a", "run") in {(r.run_id, r.phase) for r in records}
    annotations = write(annotations, "a", "resolve", 20, restore=True)
    assert find_record(obj(annotations), StepId("a", "resolve", 1), SCALE_ACTION) is not None


def test_the_newest_records_stay_even_when_every_older_one_is_an_open_scale() -> None:
    """Seven open runs' scale records fill the slots; a restart of one run and then another
    run's scale: the restart's record (not needed by any restore) is one of the newest, and
    stays, so a step taken up again, or a run writing at the same time, finds its record."""
    annotations: dict[str, str] = {}
    for i in range(MAX_RECORDS):
        annotations = write(annotations, f"open{i}", "run", i)
    annotations = write(annotations, "restarter", "run", 20, action="kubernetes.rollout_restart")
    annotations = write(annotations, "scaler", "run", 21)
    runs = {r.run_id for r in records_of(obj(annotations)).values()}
    assert {"restarter", "scaler"} <= runs
    assert len(runs) == MAX_RECORDS


def test_needs_ranks_open_scales_over_other_records_over_closed_runs() -> None:
    """An open run's scale, a restored run's scale and its restore, a restart of a run with
    no undo, and a set_env and its undo."""
    scale, restored = record("t", run="a"), record("t", run="b")
    restart = WriteRecord("kubernetes.rollout_restart", {}, {}, "c", "run", 0)
    undone = WriteRecord("kubernetes.set_env", {}, {}, "d", "run", 0)
    undo = WriteRecord("kubernetes.set_env", {}, {}, "d", "resolve", 0)
    restore = WriteRecord(SCALE_ACTION, {}, {}, "b", "resolve", 0, {"restore": True})
    ranks = needs([scale, restored, restore, restart, undone, undo])
    assert ranks == [2, 0, 0, 1, 0, 0]


# One record on the object before the write: (its run, phase, action), its time its index.
held_records = st.lists(
    st.tuples(
        st.integers(0, 5),
        st.sampled_from(["run", "resolve"]),
        st.sampled_from([SCALE_ACTION, "kubernetes.set_env"]),
    ),
    min_size=0,
    max_size=MAX_RECORDS,
)


@given(held_records, st.integers(0, 6), st.sampled_from(["run", "resolve"]))
def test_the_least_needed_records_are_dropped_first_after_the_newest(
    held: list[tuple[int, str, str]], run: int, phase: str
) -> None:
    """Whatever is on the object: the new record is there afterwards, the slots stay full,
    the ``FRESH_RECORDS`` newest others stay, and no record dropped was more needed (or, as
    needed, newer) than one kept outside those newest."""
    records = [
        WriteRecord(
            action,
            {},
            {},
            f"r{r}",
            ph,
            i,
            {"restore": True} if action == SCALE_ACTION and ph == "resolve" else {},
            f"2026-01-01T00:00:{i:02d}.000000Z",
        )
        for i, (r, ph, action) in enumerate(held)
    ]
    before = {SLOT_KEYS[i]: r.to_json() for i, r in enumerate(records)}
    new = WriteRecord(SCALE_ACTION, {}, {}, f"r{run}", phase, 99, {}, "2026-01-02T00:00:00Z")
    after = records_of(obj(apply(before, record_annotations(obj(before), new))))
    kept = {r.to_json() for r in after.values()}
    assert new.to_json() in kept
    assert len(kept) == min(MAX_RECORDS, len(records) + 1)
    rank = dict(zip((r.to_json() for r in records), needs([*records, new]), strict=False))
    fresh = {r.to_json() for r in records[-FRESH_RECORDS:]}
    assert fresh <= kept
    for dropped in (r for r in records if r.to_json() not in kept):
        for other in (r for r in records if r.to_json() in kept - fresh):
            assert (rank[other.to_json()], other.at) > (rank[dropped.to_json()], dropped.at)
