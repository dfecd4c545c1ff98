"""The size bounds of write records and of the annotations they join
(remediations.kubernetes.record_size). Pure."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remediations.kubernetes.record_size import (
    ANNOTATION_BUDGET,
    ANNOTATION_LIMIT,
    RECORD_CAP,
    RECORD_ROOM,
    AnnotationsTooLarge,
    RecordTooLarge,
    annotations_size,
    check_record,
    check_replica_sets,
    check_room,
    escaped_size,
    fitting_bytes,
    merged,
)
from remediations.kubernetes.replay import (
    MAX_RECORDS,
    SLOT_KEYS,
    WRITE_PREFIX,
    WriteRecord,
    record_annotations,
)

REF = "Deployment shop/web"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def env_record(new: str, old: str | None = "5", run: str = "r", at: str = "t") -> WriteRecord:
    """A set_env record as KubeApi.record builds it: the values twice each."""
    before = {"container": "app", "name": "BIG", "value": old}
    after = {"container": "app", "name": "BIG", "value": new}
    change = {"summary": "set BIG", "before": before, "after": after, "preconditions": before}
    return WriteRecord("kubernetes.set_env", change, after, run, "run", 0, {}, at)


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=8))
def test_annotation_size_counts_utf8_bytes_of_keys_and_values_as_the_api_server(
    annotations: dict[str, str],
) -> None:
    expected = sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in annotations.items())
    assert annotations_size(annotations) == expected
    assert annotations_size({"é": "€"}) == 2 + 3


@given(st.integers(min_value=0, max_value=3 * RECORD_CAP), st.sampled_from(["x", "é", "\n"]))
@settings(max_examples=60)
def test_a_record_is_refused_exactly_when_its_encoding_passes_the_cap(size: int, char: str) -> None:
    record = env_record(char * size)
    encoded = len(record.to_json().encode())
    if encoded <= RECORD_CAP:
        check_record(REF, record)
        return
    with pytest.raises(RecordTooLarge) as caught:
        check_record(REF, record)
    error = caught.value
    assert (error.size, error.cap) == (encoded, RECORD_CAP)
    assert not error.may_have_acted
    # The new value is what makes it large, named by where it sits in the record.
    assert {path for path, _n in error.parts} & {"change.after.value", "after.value"}
    assert f"{encoded:,} bytes" in error.message
    assert f"{RECORD_CAP:,}" in error.message


def test_the_bounds_leave_room_for_the_users_own_annotations_under_the_api_servers_cap() -> None:
    assert MAX_RECORDS * (len(SLOT_KEYS[0]) + RECORD_CAP) == RECORD_ROOM
    assert RECORD_ROOM + 64 * 1024 <= ANNOTATION_BUDGET < ANNOTATION_LIMIT == 256 * 1024


@given(st.lists(st.integers(min_value=0, max_value=RECORD_CAP), min_size=1, max_size=30))
@settings(max_examples=40, deadline=None)
def test_a_replica_sets_copies_of_capped_records_stay_within_the_record_room(
    sizes: list[int],
) -> None:
    """Each write's annotations copied onto a ReplicaSet that never loses a key (the
    Deployment controller's copy): whatever the order and sizes of records within the cap,
    the record keys there take at most RECORD_ROOM bytes."""
    deployment: dict[str, str] = {}
    replica_set: dict[str, str] = {}
    for i, size in enumerate(sizes):
        record = env_record("", run=f"run-{i}", at=f"2026-01-01T00:00:{i:02d}Z")
        room = (RECORD_CAP - len(record.to_json())) // 2  # the value sits in it twice
        record = env_record("x" * max(0, min(size, room)), run=f"run-{i}", at=record.at)
        check_record(REF, record)
        deployment = merged(
            deployment, record_annotations({"metadata": {"annotations": deployment}}, record)
        )
        replica_set.update(deployment)
    on_rs = {k: v for k, v in replica_set.items() if k.startswith(WRITE_PREFIX)}
    assert set(on_rs) <= set(SLOT_KEYS)
    assert annotations_size(on_rs) <= RECORD_ROOM


def test_a_write_that_would_pass_the_budget_on_the_object_is_refused_naming_the_largest() -> None:
    big = {LAST_APPLIED: "x" * (ANNOTATION_BUDGET - 100), "team": "a"}
    check_room(REF, {LAST_APPLIED: "x" * (ANNOTATION_BUDGET - 200)}, copied=True)
    with pytest.raises(AnnotationsTooLarge) as caught:
        check_room(REF, {**big, SLOT_KEYS[0]: "y" * 200}, copied=False)
    error = caught.value
    assert error.size > ANNOTATION_BUDGET == error.budget
    assert error.largest[0] == (LAST_APPLIED, len(LAST_APPLIED) + ANNOTATION_BUDGET - 100)
    assert not error.may_have_acted
    assert LAST_APPLIED in error.message
    assert "remove or shrink" in error.message


def test_a_deployments_copied_annotations_leave_room_for_every_slot_on_its_replica_set() -> None:
    """The user's annotations the controller copies, plus every slot at the cap, must fit:
    last-applied-configuration is not copied, and a StatefulSet has no such copies."""
    fits = ANNOTATION_BUDGET - RECORD_ROOM - len("notes")
    check_room(REF, {"notes": "n" * fits, LAST_APPLIED: "x" * 1000}, copied=True)
    too_big = {"notes": "n" * (fits + 1)}
    check_room("StatefulSet shop/db", too_big, copied=False)
    with pytest.raises(AnnotationsTooLarge, match="a ReplicaSet of Deployment shop/web") as caught:
        check_room(REF, too_big, copied=True)
    assert caught.value.size == ANNOTATION_BUDGET + 1
    assert caught.value.largest == [("notes", fits + 1 + len("notes"))]


def test_merged_sets_and_removes_as_a_merge_patch() -> None:
    assert merged({"a": "1", "b": "2"}, {"a": None, "c": "3", "d": None}) == {"b": "2", "c": "3"}


@settings(max_examples=200)
@given(sample=st.text(min_size=1, max_size=40), room=st.integers(min_value=0, max_value=20_000))
def test_text_of_the_advised_size_fits_the_room_whatever_its_characters(
    sample: str, room: int
) -> None:
    """``fitting_bytes`` is told in UTF-8 bytes, which the user counts; text with the
    sample's mix of characters up to that size takes at most ``room`` bytes in the record
    (escaped), and one more repetition of the sample may not."""
    advised = fitting_bytes(room, sample)
    copies = advised // len(sample.encode())
    assert escaped_size(sample * copies) <= room
    assert escaped_size(sample * (copies + 1)) > room - escaped_size(sample)


def test_advice_for_ascii_is_the_room_itself_and_a_third_or_half_of_it_for_other_text() -> None:
    assert fitting_bytes(7_900, "x" * 9_000) == 7_900
    assert fitting_bytes(7_900, "é" * 9_000) == 7_900 // 3
    assert fitting_bytes(7_900, "日" * 9_000) == 7_900 // 2
    assert fitting_bytes(7_900, "🙂" * 9_000) == 7_900 // 3
    assert escaped_size("é") == 6
    assert escaped_size("🙂") == 12


def test_a_replica_set_counts_what_it_keeps_beside_the_deployments_copies() -> None:
    """An annotation the Deployment dropped stays on its old ReplicaSet; the copy overwrites
    the keys the Deployment still has (their old values do not count), and the ReplicaSet's
    slots are within ``RECORD_ROOM``. Only what is kept besides can refuse the write."""
    note = "example.com/notes"
    room = ANNOTATION_BUDGET - RECORD_ROOM
    after = {note: "n" * (room - len(note) - 100)}
    overwritten = {note: "o" * 200_000, SLOT_KEYS[0]: "r" * RECORD_CAP}
    check_replica_sets(REF, after, [("shop/web-1", overwritten)])
    kept = {"example.com/old": "x" * 200}
    with pytest.raises(AnnotationsTooLarge) as caught:
        check_replica_sets(REF, after, [("shop/web-1", {}), ("shop/web-2", kept)])
    assert "ReplicaSet shop/web-2 of Deployment shop/web" in caught.value.message
    assert caught.value.size == annotations_size({**after, **kept}) + RECORD_ROOM
    assert [k for k, _n in caught.value.largest] == [note, "example.com/old"]
