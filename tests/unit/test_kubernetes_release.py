"""What counts as a release (``release``), the rollback's annotations and default revision
(``rollback``): pure functions on plain-dict objects."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from remediations.kubernetes.container import SetEnv, SetResources
from remediations.kubernetes.objects import (
    RESTART_RUN_ANNOTATION,
    RESTARTED_AT,
    REVISION,
    REVISION_HISTORY,
    is_remediator_key,
)
from remediations.kubernetes.release import (
    OWN_EDITS,
    NewestRelease,
    former_revisions,
    is_release,
    newest_release,
    no_default_reason,
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


def test_remediators_edits_of_an_init_container_are_not_releases() -> None:
    # set_env and set_resources edit an init container (a native sidecar) as kubectl's set
    # does; one the proxy had no env before still compares equal once its edit is set back.
    def with_proxy(**proxy: Any) -> dict[str, Any]:
        tpl = template()
        tpl["spec"]["initContainers"] = [{"name": "proxy", "image": "img/p:1", **proxy}]
        return tpl

    logged = with_proxy(env=[{"name": "LOG", "value": "debug"}])
    env = record(
        SetEnv.name,
        {"container": "proxy", "name": "LOG", "value": None},
        {"container": "proxy", "name": "LOG", "value": "debug"},
    )
    assert not is_release(rs(logged, env), rs(with_proxy()))
    assert is_release(rs(logged), rs(with_proxy()))  # no record: a human's
    raised = with_proxy(resources={"limits": {"memory": "128Mi"}})
    resources = record(
        SetResources.name,
        {"container": "proxy", "limits": {"memory": None}},
        {"container": "proxy", "limits": {"memory": "128Mi"}},
    )
    assert not is_release(rs(raised, resources), rs(with_proxy()))


def test_newest_release_looks_past_restarts() -> None:
    one, two = template("img/a:1"), template("img/a:2")
    assert newest_release({1: rs(one)}) == NewestRelease(1, 1, known=True)
    assert newest_release({1: rs(one), 2: rs(two)}) == NewestRelease(2, 2, True, previous=1)
    three = {1: rs(one), 2: rs(two), 3: rs(restarted(two))}
    assert newest_release(three) == NewestRelease(2, 2, True, previous=1)
    # Only restarts after the creation: revision 1, the creation, is the release.
    restarts = {1: rs(one), 2: rs(restarted(one)), 3: rs(restarted(one, "later"))}
    assert newest_release(restarts) == NewestRelease(1, 1, known=True)


def test_a_pruned_history_does_not_take_a_restart_for_the_release() -> None:
    """revisionHistoryLimit 0: only the restart (revision 2) is kept; the release before it is
    gone, so which revision is the release cannot be told (not: revision 2)."""
    one = template("img/a:1")
    assert newest_release({2: rs(restarted(one))}) == NewestRelease(2, 2, known=False)
    # Limit 1 after two restarts: revisions 2 and 3 kept, both restarts of revision 1.
    kept = {2: rs(restarted(one)), 3: rs(restarted(one, "later"))}
    assert newest_release(kept) == NewestRelease(2, 2, known=False)
    # A release on top is known whatever was pruned below it.
    two = {2: rs(restarted(one)), 3: rs(template("img/a:2"))}
    assert newest_release(two) == NewestRelease(3, 3, True, previous=2)
    # A gap (revision 5 gone, 4 kept) is the same: whether 6 is a release cannot be told.
    assert newest_release({4: rs(one), 6: rs(template("img/a:2"))}).known is False


def at(revision: int, tpl: dict[str, Any], *former: int) -> dict[str, Any]:
    """A ReplicaSet now at ``revision`` that held ``former`` revisions (rolled back to)."""
    out = rs(tpl)
    out["metadata"]["annotations"][REVISION] = str(revision)
    if former:
        out["metadata"]["annotations"][REVISION_HISTORY] = ",".join(map(str, former))
    return out


def test_a_rolled_back_replicaset_still_holds_its_former_revisions() -> None:
    one, two, three = template("img/a:1"), template("img/a:2"), template("img/a:3")
    # 1: img 1, 2: img 2, 3: img 3; undo to 2 (now 4, history "2"); restart (5). Revision 4
    # is a release (img 3 -> img 2), a rollback to revision 2's template.
    history = {1: at(1, one), 3: at(3, three), 4: at(4, two, 2), 5: at(5, restarted(two))}
    assert newest_release(history) == NewestRelease(4, 4, True, previous=3, returns_to=2)
    # 1: img 1, 2: img 2, 3: a restart of 2, undo to 2 (now 4, history "2"). Revision 3's
    # predecessor is revision 2, held by the ReplicaSet now at 4 (not 1): 3 is a restart, and
    # the release is revision 2, whose template that ReplicaSet holds.
    same = {1: at(1, one), 3: at(3, restarted(two)), 4: at(4, two, 2)}
    assert newest_release(same) == NewestRelease(2, 4, True, previous=1)
    # Undo to 1 (now 3, history "1"): its predecessor 2 is gone and its ReplicaSet is old, so
    # its creation bounds nothing.
    pruned = {3: at(3, one, 1), 4: at(4, restarted(one))}
    assert newest_release(pruned) == NewestRelease(3, 3, known=False, bounded=False)
    assert former_revisions(at(3, one, 1)) == frozenset({1})
    assert former_revisions(at(3, one)) == frozenset()


def test_a_rollback_has_no_default_revision_it_would_ship_what_it_replaced() -> None:
    """x:1, x:2, x:3, then ``kubectl rollout undo``: revision 4 is the x:2 ReplicaSet again.
    The revision before it (3, x:3) is what the human rolled back from: never the default."""
    one, two, three = template("img/a:1"), template("img/a:2"), template("img/a:3")
    undone = {1: at(1, one), 3: at(3, three), 4: at(4, two, 2)}
    assert newest_release(undone) == NewestRelease(4, 4, True, previous=3, returns_to=2)
    assert default_revision(undone) is None
    assert no_default_reason(undone) == (
        "no previous revision to roll back to that a rollback did not replace: its newest "
        "release, revision 4, is a rollback to the template of revision 2, so going back to "
        "revision 3 would ship again the template that rollback replaced; to go back further, "
        "name the revision (to_revision)"
    )
    # After it a restart (5) and remediator's own restart: still the rollback's.
    later = {**undone, 5: at(5, restarted(two))}
    assert default_revision(later) is None
    # Rolled back twice to the same ReplicaSet: the newer of its former revisions.
    again = {1: at(1, one), 5: at(5, three, 3), 6: at(6, two, 2, 4)}
    assert newest_release(again).returns_to == 4
    # A template set back by hand to an older one's, but for a restart: a new ReplicaSet
    # (another pod-template-hash), the same release as revision 1's.
    by_hand = {1: at(1, one), 2: at(2, two), 3: at(3, restarted(two)), 4: at(4, restarted(one))}
    assert newest_release(by_hand) == NewestRelease(4, 4, True, previous=3, returns_to=1)
    assert default_revision(by_hand) is None
    # A release after the rollback is a release like any: the default is the one before it.
    shipped = {**undone, 5: at(5, template("img/a:4"))}
    assert newest_release(shipped) == NewestRelease(5, 5, True, previous=4)
    assert default_revision(shipped) == 4


# A revision is a release (a new image) or a restart of the one before it.
@given(st.lists(st.booleans(), min_size=1, max_size=12), st.integers(min_value=0, max_value=12))
def test_newest_release_is_right_or_says_it_cannot_tell(releases: list[bool], keep: int) -> None:
    """Any history pruned as the Deployment controller prunes it (the oldest revisions first,
    the current one always kept): the newest release is the true one when the history can tell,
    and otherwise the answer says so, names a revision at or after the true one, and bounds
    its time (creation order is revision order here: no rollbacks)."""
    full: dict[int, dict[str, Any]] = {}
    truth = 1
    tpl = template("img/a:0")
    for revision, release in enumerate(releases, start=1):
        if revision > 1 and release:
            tpl, truth = template(f"img/a:{revision}"), revision
        else:
            tpl = restarted(tpl, str(revision))
        full[revision] = rs(tpl)
    assert newest_release(full) == NewestRelease(
        truth, truth, True, previous=truth - 1 if truth > 1 else None
    )
    newest = len(releases)
    kept = {r: full[r] for r in full if r >= min(newest, newest - keep)}
    got = newest_release(kept)
    tells = truth in kept and (truth == 1 or truth - 1 in kept)
    assert got.known is tells
    if tells:
        assert got.revision == truth
        assert default_revision(kept) == (truth - 1 if truth > 1 else None)
    else:
        assert got.revision == min(kept) >= truth
        assert got.bounded  # created with its revision: the release came at or before it
        assert default_revision(kept) is None


def test_default_revision_is_kubectls_second_highest_unless_a_restart_is_on_top() -> None:
    one, two = template("img/a:1"), template("img/a:2")
    assert default_revision({}) is None
    assert default_revision({1: rs(one)}) is None
    # Not the Deployment's revision annotation: the owned ReplicaSets' revisions, as kubectl.
    assert default_revision({1: rs(one), 2: rs(two), 3: rs(template("img/a:3"))}) == 2
    # Revision 3 runs revision 1's template again: a rollback, nothing to go back to.
    assert default_revision({1: rs(one), 2: rs(two), 3: rs(one)}) is None
    assert default_revision({6: rs(one), 7: rs(two)}) == 6
    assert default_revision({1: rs(one), 2: rs(two), 3: rs(restarted(two))}) == 1
    assert default_revision({1: rs(one), 2: rs(restarted(one))}) is None
    # The release's predecessor is gone: no default, rather than the oldest kept revision.
    assert default_revision({2: rs(restarted(one)), 3: rs(restarted(one, "x"))}) is None
    assert default_revision({4: rs(one), 7: rs(two)}) is None


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
