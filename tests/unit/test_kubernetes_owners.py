"""``controller_uid`` and ``is_controlled_by``: apimachinery's GetControllerOf / IsControlledBy
on the plain-dict form of objects."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from remediations.kubernetes.objects import controller_uid, is_controlled_by

UIDS = st.sampled_from(["u1", "u2", "u3"])
REFS = st.lists(
    st.fixed_dictionaries(
        {"uid": UIDS, "kind": st.sampled_from(["ReplicaSet", "Deployment"]), "name": st.just("x")},
        optional={"controller": st.booleans()},
    ),
    max_size=4,
)


def with_refs(refs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"name": "p", "ownerReferences": refs}}


def owner(uid: str | None) -> dict[str, Any]:
    return {"metadata": {"name": "o", **({"uid": uid} if uid is not None else {})}}


@given(REFS, UIDS)
def test_the_first_controller_reference_decides(refs: list[dict[str, Any]], uid: str) -> None:
    controllers = [r["uid"] for r in refs if r.get("controller")]
    expected = bool(controllers) and controllers[0] == uid
    assert controller_uid(with_refs(refs)) == (controllers[0] if controllers else None)
    assert is_controlled_by(with_refs(refs), owner(uid)) is expected


def test_an_owner_that_is_not_the_controller_does_not_control() -> None:
    """Another Deployment's ReplicaSet may list web as a plain owner; only the controller
    counts, as in kubectl's GetAllReplicaSets."""
    refs: list[dict[str, Any]] = [
        {"uid": "web", "kind": "Deployment"},
        {"uid": "canary", "controller": True},
    ]
    assert not is_controlled_by(with_refs(refs), owner("web"))
    assert is_controlled_by(with_refs(refs), owner("canary"))


def test_bare_objects_and_owners_without_uid() -> None:
    assert controller_uid({"metadata": {"name": "bare"}}) is None
    assert controller_uid({}) is None
    assert not is_controlled_by({}, owner("u1"))
    assert not is_controlled_by(with_refs([{"controller": True}]), owner(None))
