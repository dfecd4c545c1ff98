"""What counts as a release (``release``), the rollback's annotations and default revision
(``rollback``): pure functions on plain-dict objects."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from remediations.kubernetes.container import SetEnv, SetResources
from remediations.kubernetes.objects import RESTART_RUN_ANNOTATION, RESTARTED_AT, is_remediator_key
from remediations.kubernetes.release import (
    OWN_EDITS,
    is_release,
    newest_release,
    only_restart_apart,
)
from remediations.kubernetes.replay import WriteRecord
from remediations.kubernetes.rollback import default_revision, rolled_back_annotations


def template(image: str = "img/a:1", **container: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}},
        "spec": {"containers": [{"name": "app", "image": image, **container}]},
    }


def rs(tpl: dict[str, Any], *records: WriteRecord) -> dict[str, Any]:
    annotations = {f"write.remediator.io/r.run.{i}": r.to_json() for i, r in enumerate(records)}
    return {"metadata": {"annotations": annotations}, "spec": {"template": tpl}}


def restarted(tpl: dict[str, Any], at: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    out = copy.deepcopy(tpl)
    out["metadata"]["annotations"] = {RESTARTED_AT: at, RESTART_RUN_ANNOTATION: "run-1"}
    return out


def record(action: str, before: dict[str, Any], after: dict[str, Any]) -> WriteRecord:
    change = {"summary": "", "before": before, "after": after, "preconditions": before}
    return WriteRecord(action=action, change=change, after=after)


def test_own_edits_are_the_container_actions() -> None:
    assert frozenset({SetResources.name, SetEnv.name}) == OWN_EDITS


def test_remediator_keys() -> None:
    assert is_remediator_key("remediator.io/replicas")
    assert is_remediator_key("write.remediator.io/run.run.0")
    assert not is_remediator_key("kubernetes.io/change-cause")
    assert not is_remediator_key("notremediator.io/x")
    assert not is_remediator_key("remediator.io")


@given(st.text(min_size=1, max_size=30), st.integers(min_value=0, max_value=9))
def test_a_restart_is_not_a_release_and_an_image_is(at: str, tag: int) -> None:
    base = template(f"img/a:{tag}")
    assert only_restart_apart(base, restarted(base, at))
    assert not is_release(rs(restarted(base, at)), rs(base))
    assert is_release(rs(restarted(template(f"img/a:{tag + 1}"), at)), rs(base))


def test_remediators_recorded_edits_are_not_releases_a_humans_are() -> None:
    old = template(resources={"limits": {"memory": "1Gi"}})
    raised = template(resources={"limits": {"memory": "1536Mi"}})
    resources = record(
        SetResources.name,
        {"container": "app", "limits": {"memory": "1Gi"}},
        {"container": "app", "limits": {"memory": "1.5Gi"}},  # the same quantity
    )
    assert not is_release(rs(raised, resources), rs(old))
    assert is_release(rs(raised), rs(old))  # no record: a human raised it
    # A record of an earlier revision (copied onto this one too) does not explain a change
    # from another value.
    older = template(resources={"limits": {"memory": "512Mi"}})
    assert is_release(rs(raised, resources), rs(older))

    with_env = template(env=[{"name": "DB_POOL_SIZE", "value": "5"}])
    env = record(
        SetEnv.name,
        {"container": "app", "name": "DB_POOL_SIZE", "value": None},
        {"container": "app", "name": "DB_POOL_SIZE", "value": "5"},
    )
    assert not is_release(rs(with_env, env), rs(template()))
    assert is_release(rs(with_env), rs(template()))
    # The recorded edit, and an image besides it: a release.
    assert is_release(
        rs(template("img/a:2", env=with_env["spec"]["containers"][0]["env"]), env), rs(template())
    )


def test_newest_release_looks_past_restarts() -> None:
    one, two = template("img/a:1"), template("img/a:2")
    assert newest_release([rs(one)]) == 0
    assert newest_release([rs(one), rs(two)]) == 1
    assert newest_release([rs(one), rs(two), rs(restarted(two))]) == 1
    assert newest_release([rs(one), rs(restarted(one)), rs(restarted(one, "later"))]) == 0


def test_default_revision_is_kubectls_second_highest_unless_a_restart_is_on_top() -> None:
    one, two = template("img/a:1"), template("img/a:2")
    assert default_revision({}) is None
    assert default_revision({1: rs(one)}) is None
    # Not the Deployment's revision annotation: the owned ReplicaSets' revisions, as kubectl.
    assert default_revision({1: rs(one), 2: rs(two), 3: rs(one)}) == 2
    assert default_revision({4: rs(one), 7: rs(two)}) == 4
    assert default_revision({1: rs(one), 2: rs(two), 3: rs(restarted(two))}) == 1
    assert default_revision({1: rs(one), 2: rs(restarted(one))}) is None


def test_rolled_back_annotations_are_kubectls_with_remediators_own_kept() -> None:
    deployment = {
        "deployment.kubernetes.io/revision": "3",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "kubernetes.io/change-cause": "v3",
        "team": "shop",
        "remediator.io/replicas": "3",
        "write.remediator.io/b.run.0": "{}",
    }
    replicaset = {
        "deployment.kubernetes.io/revision": "1",
        "deployment.kubernetes.io/desired-replicas": "1",
        "kubernetes.io/change-cause": "v1",
        "remediator.io/replicas": "2",
        "write.remediator.io/a.run.0": "{}",
    }
    assert rolled_back_annotations(deployment, replicaset) == {
        "deployment.kubernetes.io/revision": "3",
        "kubectl.kubernetes.io/last-applied-configuration": "{}",
        "kubernetes.io/change-cause": "v1",
        "remediator.io/replicas": "3",
        "write.remediator.io/b.run.0": "{}",
    }
