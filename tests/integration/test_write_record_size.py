"""Write records stay small enough for the annotations they join, against the real
kube-apiserver and controller-manager (remediations.kubernetes.record_size).

A set_env record keeps the variable's old and new values twice each. Unbounded, one record (or
the 8 slots together) could pass the API server's 256 KiB cap on an object's annotations, on
the Deployment or on the ReplicaSet the controller copies them onto and never removes them
from. A write whose record is over the cap, or after which the annotations would leave too
little room, is refused before it is sent: nothing on the Deployment changes.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from receiver.model import RunOutcome
from remediations.base import ActionContext, Clients, Outcome
from remediations.kubernetes.api import RUN_ID_ANNOTATION
from remediations.kubernetes.container import SetEnv
from remediations.kubernetes.record_size import (
    ANNOTATION_BUDGET,
    RECORD_CAP,
    RECORD_ROOM,
    AnnotationsTooLarge,
    RecordTooLarge,
)
from remediations.kubernetes.replay import WRITE_PREFIX, records_of
from remediations.kubernetes.rollback import RolloutUndo
from remediations.targets import Target
from tests.support.approvals import MakeApprovalEnv
from tests.support.kube_actions import set_image
from tests.support.kube_fixtures import (
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    MakeDeployment,
    owned_replica_sets,
    patch_deployment,
    rs_annotations,
    wait_for_revision,
    wait_for_rs_annotations,
)

pytestmark = pytest.mark.kube

NOTES = "example.com/notes"

RULES = """
rules:
  - name: big-env
    match: ['alertname="DatabaseConnectionsHigh"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: web}
    steps:
      - action: kubernetes.set_env
        approval: APPROVAL
        params: {container: app, name: BIG, value: "VALUE"}
"""


def step_ctx(kube: Any, *, dry_run: bool = False) -> ActionContext:
    """Step 0 of a new run's ``run`` phase: its writes carry a write record."""
    return ActionContext(
        run_id=str(uuid.uuid4()),
        dry_run=dry_run,
        clients=Clients({"kubernetes": kube}),
        step=0,
    )


async def state(kube: Any, ns: str) -> tuple[dict[str, str], dict[str, str | None], int]:
    """The Deployment's annotations, its app container's env and its generation."""
    dep = await k8s.AppsV1Api(kube).read_namespaced_deployment("web", ns)
    app = next(c for c in dep.spec.template.spec.containers if c.name == "app")
    env: dict[str, str | None] = {e.name: e.value for e in app.env or []}
    return dict(dep.metadata.annotations or {}), env, dep.metadata.generation


async def test_set_env_whose_record_would_pass_the_cap_is_refused_and_changes_nothing(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """A 20,000-byte value, kept twice in the record, was written (an annotation of ~40 KB on
    the Deployment and, copied, on its ReplicaSet). Refused in the preview (before an
    approval would be asked), in a dry run and in the run, naming the variable, the sizes and
    the cap; the Deployment keeps its annotations, env and generation. A value that fits is
    still written, with its record."""
    ns = kube_namespace
    await make_deployment("web")
    target = Target("Deployment", ns, "web")
    before = await state(kube_admin, ns)
    huge = SetEnv.Params(container="app", name="BIG", value="x" * 20_000)

    for ctx in (step_ctx(kube_admin), step_ctx(kube_admin, dry_run=True)):
        with pytest.raises(RecordTooLarge):
            await SetEnv().preview(ctx, target, huge)
    with pytest.raises(RecordTooLarge) as caught:
        await SetEnv().run(step_ctx(kube_admin), target, huge)
    error = caught.value
    assert not error.may_have_acted
    assert error.size > error.cap == RECORD_CAP
    assert "setting BIG on container app of Deployment " in error.message
    assert "new value (20,000 bytes)" in error.message
    assert f"over the cap of {RECORD_CAP:,} bytes" in error.message
    assert "kubectl set env" in error.message
    assert await state(kube_admin, ns) == before

    fits = SetEnv.Params(container="app", name="BIG", value="y" * 3_000)
    result = await SetEnv().run(step_ctx(kube_admin), target, fits)
    assert result.outcome is Outcome.OK, result.message
    annotations, env, _generation = await state(kube_admin, ns)
    assert env["BIG"] == "y" * 3_000
    [(key, record)] = records_of({"metadata": {"annotations": annotations}}).items()
    assert record.after["value"] == "y" * 3_000
    assert len(annotations[key]) <= RECORD_CAP


async def test_a_write_that_would_leave_its_replica_set_too_little_room_is_refused(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The user's own annotations, copied onto the ReplicaSet, leave less than the 8 slots
    at the cap could take there: a small set_env is refused, naming the largest annotation;
    the Deployment is unchanged. Once that annotation is 1,000 bytes smaller (room for the
    run's stamp, copied too), the same step is written."""
    ns = kube_namespace
    await make_deployment("web")
    target = Target("Deployment", ns, "web")
    over = ANNOTATION_BUDGET - RECORD_ROOM - len(NOTES) + 1
    await patch_deployment(
        kube_admin, ns, "web", {"metadata": {"annotations": {NOTES: "n" * over}}}, MERGE_PATCH
    )
    before = await state(kube_admin, ns)
    params = SetEnv.Params(container="app", name="POOL_SIZE", value="5")

    with pytest.raises(AnnotationsTooLarge) as caught:
        await SetEnv().run(step_ctx(kube_admin), target, params)
    error = caught.value
    assert not error.may_have_acted
    assert error.largest[0] == (NOTES, len(NOTES) + over)
    assert f"a ReplicaSet of Deployment {ns}/web" in error.message
    assert NOTES in error.message
    assert await state(kube_admin, ns) == before
    assert not {k for k in before[0] if k.startswith(WRITE_PREFIX) or k == RUN_ID_ANNOTATION}

    await patch_deployment(
        kube_admin,
        ns,
        "web",
        {"metadata": {"annotations": {NOTES: "n" * (over - 1_000)}}},
        MERGE_PATCH,
    )
    result = await SetEnv().run(step_ctx(kube_admin), target, params)
    assert result.outcome is Outcome.OK, result.message
    annotations, env, _generation = await state(kube_admin, ns)
    assert env["POOL_SIZE"] == "5"
    assert len(records_of({"metadata": {"annotations": annotations}})) == 1


async def test_a_rollback_that_would_bring_back_too_large_annotations_is_refused(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """Revision 1's ReplicaSet keeps a large annotation the Deployment has dropped since (the
    controller copied it there and never removes one). An undo gives the Deployment that
    ReplicaSet's annotations, so checking the live ones is not enough: the rollback is refused
    before it is sent, naming the annotation, and the Deployment stays at revision 2."""
    ns = kube_namespace
    await make_deployment("web", containers=[k8s.V1Container(name="app", image="img/a:1")])
    target = Target("Deployment", ns, "web")
    over = ANNOTATION_BUDGET - RECORD_ROOM
    await patch_deployment(
        kube_admin, ns, "web", {"metadata": {"annotations": {NOTES: "n" * over}}}, MERGE_PATCH
    )
    await wait_for_rs_annotations(kube_admin, ns, "web", 1, {NOTES: "n" * over})
    await patch_deployment(
        kube_admin, ns, "web", {"metadata": {"annotations": {NOTES: None}}}, MERGE_PATCH
    )
    await set_image(kube_admin, ns, "img/a:2")
    await wait_for_revision(kube_admin, ns, "web", 2)
    before = await state(kube_admin, ns)

    with pytest.raises(AnnotationsTooLarge) as caught:
        await RolloutUndo().run(step_ctx(kube_admin), target, RolloutUndo.Params())
    assert not caught.value.may_have_acted
    assert caught.value.largest[0] == (NOTES, len(NOTES) + over)
    annotations, _env, generation = await state(kube_admin, ns)
    assert (annotations, generation) == (before[0], before[2])


@pytest.mark.parametrize("approval", ["auto", "never"])
async def test_a_run_records_the_step_refused_without_acting_and_asks_no_approval(
    approval: str,
    approval_env: MakeApprovalEnv,
    kube_admin: Any,
    kube_namespace: str,
    make_deployment: MakeDeployment,
) -> None:
    """Through the pipeline: the set_env step whose record is over the cap is recorded
    ``refused``, not as a step that may have acted; with ``auto`` (a high-risk action) its
    preview is refused, so no engineer is asked to approve a write that cannot be made."""
    ns = kube_namespace
    await make_deployment("web")
    before = await state(kube_admin, ns)
    rules = RULES.replace("APPROVAL", approval).replace("VALUE", "x" * 20_000)
    env = await approval_env(rules=rules, kube=kube_admin)
    live = env.harness
    await live.deliver({"alertname": "DatabaseConnectionsHigh", "namespace": ns})
    run = await live.only_run()
    assert run.outcome is not RunOutcome.AWAITING_APPROVAL
    [step] = run.steps
    assert (step.action, step.outcome, step.may_have_acted) == (
        "kubernetes.set_env",
        "refused",
        False,
    )
    assert "setting BIG on container app" in step.message
    assert f"over the cap of {RECORD_CAP:,} bytes" in step.message
    assert await env.desk.store.latest_approval(run.id, 0) is None
    assert await state(kube_admin, ns) == before


@pytest.mark.parametrize("char", ["é", "日", "🙂"])
async def test_set_env_refusal_advises_a_size_that_fits_for_the_values_own_characters(
    char: str, kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The record escapes every non-ASCII character (``\\u00e9``: 6 bytes for 2 or 3 UTF-8
    bytes, 12 for an emoji), so the refusal's advice is told in the refused value's own
    characters: a value of the advised size, of those characters, is written, and the refused
    one is over it."""
    ns = kube_namespace
    await make_deployment("web")
    target = Target("Deployment", ns, "web")
    refused = char * 9_000
    with pytest.raises(RecordTooLarge) as caught:
        await SetEnv().preview(
            step_ctx(kube_admin), target, SetEnv.Params(container="app", name="BIG", value=refused)
        )
    found = re.search(r"at most about ([\d,]+) bytes", caught.value.message)
    assert found, caught.value.message
    advised = int(found.group(1).replace(",", ""))
    assert advised < len(refused.encode())
    fits = char * (advised // len(char.encode()))
    await SetEnv().preview(
        step_ctx(kube_admin), target, SetEnv.Params(container="app", name="BIG", value=fits)
    )


async def test_a_rollback_away_from_a_large_annotation_is_not_refused_for_it(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """The bad release brought a large annotation (over what leaves the slots their room on a
    ReplicaSet). Rolling back to revision 1 gives the Deployment revision 1's ReplicaSet's
    annotations, without it: the rollback is checked against those alone, and is made."""
    ns = kube_namespace
    await make_deployment("web", containers=[k8s.V1Container(name="app", image="img/a:1")])
    target = Target("Deployment", ns, "web")
    over = ANNOTATION_BUDGET - RECORD_ROOM + 4_000
    # In one write with the new template: the controller copies the note onto revision 2's
    # ReplicaSet only (revision 1's is no longer the current one).
    release = {
        "metadata": {"annotations": {NOTES: "n" * over}},
        "spec": {"template": {"spec": {"containers": [{"name": "app", "image": "img/a:2"}]}}},
    }
    await patch_deployment(kube_admin, ns, "web", release, STRATEGIC_MERGE_PATCH)
    await wait_for_revision(kube_admin, ns, "web", 2)
    assert NOTES not in await rs_annotations(kube_admin, ns, "web", 1)

    result = await RolloutUndo().run(step_ctx(kube_admin), target, RolloutUndo.Params())
    assert result.outcome is Outcome.OK, result.message
    annotations, _env, _generation = await state(kube_admin, ns)
    assert NOTES not in annotations
    await wait_for_revision(kube_admin, ns, "web", 3)


async def test_a_template_write_is_refused_when_an_old_replica_set_could_overflow(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """Revision 1's ReplicaSet keeps a large annotation the Deployment has dropped since. A
    template write can return to that ReplicaSet's template (set_env back to the old value:
    set_env's own undo), and the controller then copies the Deployment's annotations, the
    slots among them, on top of what it kept: past the API server's cap the Deployment
    stalls. So the write is refused, naming that ReplicaSet and the annotation; once the
    annotation is removed from the ReplicaSet, it is written."""
    ns = kube_namespace
    await make_deployment("web")
    target = Target("Deployment", ns, "web")
    size = ANNOTATION_BUDGET - RECORD_ROOM + 4_000
    await patch_deployment(
        kube_admin, ns, "web", {"metadata": {"annotations": {NOTES: "n" * size}}}, MERGE_PATCH
    )
    await wait_for_rs_annotations(kube_admin, ns, "web", 1, {NOTES: "n" * size})
    await patch_deployment(
        kube_admin, ns, "web", {"metadata": {"annotations": {NOTES: None}}}, MERGE_PATCH
    )
    before = await state(kube_admin, ns)
    params = SetEnv.Params(container="app", name="POOL_SIZE", value="5")

    with pytest.raises(AnnotationsTooLarge) as caught:
        await SetEnv().run(step_ctx(kube_admin), target, params)
    error = caught.value
    assert not error.may_have_acted
    assert error.largest[0] == (NOTES, len(NOTES) + size)
    [rs] = await owned_replica_sets(kube_admin, ns, "web")
    assert f"ReplicaSet {ns}/{rs.metadata.name}" in error.message
    assert await state(kube_admin, ns) == before

    # The stubs omit _content_type, hence a typed dict of options (as patch_deployment).
    options: dict[str, Any] = {"_content_type": MERGE_PATCH}
    await k8s.AppsV1Api(kube_admin).patch_namespaced_replica_set(
        rs.metadata.name, ns, {"metadata": {"annotations": {NOTES: None}}}, **options
    )
    result = await SetEnv().run(step_ctx(kube_admin), target, params)
    assert result.outcome is Outcome.OK, result.message
    await wait_for_revision(kube_admin, ns, "web", 2)


async def test_a_rollback_is_refused_when_its_replica_set_keeps_old_write_records(
    kube_admin: Any, kube_namespace: str, make_deployment: MakeDeployment
) -> None:
    """An old release's per-step write record (``write.remediator.io/<run>.<phase>.<step>``,
    from before the slots and the cap) was copied onto revision 1's ReplicaSet, which keeps
    it after the Deployment dropped it. A rollback makes the controller reuse that very
    ReplicaSet and copy the Deployment's annotations, the slots among them, on top: it is
    refused as set_env to that template is, naming the ReplicaSet and the record, and the
    Deployment stays at revision 2. Once the record is removed from the ReplicaSet, the
    rollback is made."""
    ns = kube_namespace
    await make_deployment("web", containers=[k8s.V1Container(name="app", image="img/a:1")])
    target = Target("Deployment", ns, "web")
    legacy = f"{WRITE_PREFIX}{uuid.uuid4()}.run.0"
    size = ANNOTATION_BUDGET - RECORD_ROOM + 4_000
    await patch_deployment(
        kube_admin, ns, "web", {"metadata": {"annotations": {legacy: "r" * size}}}, MERGE_PATCH
    )
    await wait_for_rs_annotations(kube_admin, ns, "web", 1, {legacy: "r" * size})
    await patch_deployment(
        kube_admin, ns, "web", {"metadata": {"annotations": {legacy: None}}}, MERGE_PATCH
    )
    [rs] = await owned_replica_sets(kube_admin, ns, "web")
    await set_image(kube_admin, ns, "img/a:2")
    await wait_for_revision(kube_admin, ns, "web", 2)
    before = await state(kube_admin, ns)

    set_env = SetEnv.Params(container="app", name="POOL_SIZE", value="5")
    with pytest.raises(AnnotationsTooLarge) as by_set_env:
        await SetEnv().run(step_ctx(kube_admin), target, set_env)
    with pytest.raises(AnnotationsTooLarge) as by_undo:
        await RolloutUndo().run(step_ctx(kube_admin), target, RolloutUndo.Params())
    for error in (by_set_env.value, by_undo.value):
        assert not error.may_have_acted
        assert error.largest[0] == (legacy, len(legacy) + size)
        assert f"ReplicaSet {ns}/{rs.metadata.name}" in error.message
    assert await state(kube_admin, ns) == before

    options: dict[str, Any] = {"_content_type": MERGE_PATCH}
    await k8s.AppsV1Api(kube_admin).patch_namespaced_replica_set(
        rs.metadata.name, ns, {"metadata": {"annotations": {legacy: None}}}, **options
    )
    result = await RolloutUndo().run(step_ctx(kube_admin), target, RolloutUndo.Params())
    assert result.outcome is Outcome.OK, result.message
    await wait_for_revision(kube_admin, ns, "web", 3)
