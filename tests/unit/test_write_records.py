"""Write records (remediations.kubernetes.replay): keys, round trip, pruning. Pure."""

from __future__ import annotations

from remediations.kubernetes.replay import (
    MAX_RECORDS,
    WRITE_PREFIX,
    WriteRecord,
    find_record,
    record_annotations,
    record_key,
)


def record(at: str, action: str = "kubernetes.scale") -> WriteRecord:
    change = {"summary": "s", "before": {"replicas": 2}, "after": {"replicas": 4}}
    return WriteRecord(action, change, {"replicas": 4}, "r", "run", 0, {}, at)


def test_key_names_run_phase_and_step_and_stays_a_valid_annotation_name() -> None:
    run = "0b5f2c1e-8a7d-4c1b-9a55-3c2d1e0f9a8b"
    assert record_key(run, "resolve", 3) == f"{WRITE_PREFIX}{run}.resolve.3"
    assert record_key(run, "run", None) is None
    long = record_key("x" * 80, "on_failed", 12)
    assert long is not None
    assert len(long.removeprefix(WRITE_PREFIX)) == 40
    assert long != record_key("x" * 80, "on_failed", 13)


def test_a_record_is_found_only_for_its_step_and_action() -> None:
    key = record_key("r", "run", 0)
    assert key is not None
    obj = {"metadata": {"annotations": {key: record("t").to_json(), f"{WRITE_PREFIX}x": "{bad"}}}
    found = find_record(obj, key, "kubernetes.scale")
    assert found is not None
    assert found.after == {"replicas": 4}
    assert find_record(obj, key, "kubernetes.set_env") is None
    assert find_record(obj, record_key("r", "run", 1), "kubernetes.scale") is None
    assert find_record(obj, None, "kubernetes.scale") is None


def test_the_oldest_records_past_the_cap_are_removed_by_the_next_write() -> None:
    old = {f"{WRITE_PREFIX}k{i}": record(f"2026-01-01T00:00:{i:02d}Z").to_json() for i in range(10)}
    patch = record_annotations(
        {"metadata": {"annotations": old}}, f"{WRITE_PREFIX}new", record("z")
    )
    removed = sorted(k for k, v in patch.items() if v is None)
    # The new record and the newest MAX_RECORDS - 1 stay: k0 .. k2 go.
    assert removed == [f"{WRITE_PREFIX}k{i}" for i in range(10 - (MAX_RECORDS - 1))]
    assert patch[f"{WRITE_PREFIX}new"] == record("z").to_json()
