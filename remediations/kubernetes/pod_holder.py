"""Which workload holds a pod for ``kubernetes.delete_pod``: the one that would replace it
(a Pod target no controller would replace is refused), and the one that keeps the record of
its deletion.

A deleted pod cannot carry a record of its deletion, so the step's write record goes on the
workload that holds the pod: the Deployment whose ReplicaSet controls it, or the StatefulSet
or DaemonSet controlling it (``holder_of``). A pod of a ReplicaSet no Deployment controls gets
no record (the actions write no ReplicaSet). Taken up after a crash that came after the
eviction, the pod itself is gone (a ReplicaSet's or DaemonSet's replacement has a new name, a
StatefulSet's may not exist yet), so its controller cannot be read from it: ``recorded_holder``
looks for the step's record on the workloads the pod's name was made from.

The record is written before the evictions, so it says they all happened. When an eviction is
refused (a PodDisruptionBudget's 429, or any other refusal), ``correct_record`` makes it say
which pods were evicted (none, when the first was refused) and why the others were not; when
no eviction could reach the API server and the step ends for it (its wait for the server
over: receiver.pipeline.unreachable), ``correct_unreached`` makes it say none was, and
``correct_unplanned`` the same when that last try fails before it evicts, in its plan's reads;
when evictions stop part way on any other failure, ``correct_stopped`` makes it say which pods
went. While the step still waits, the record stays as written: the next try carries it out. Its
``change`` (the pods chosen, their uids) stays as written: it is what a take-up evicts again,
and it is what was approved. Corrected rather than removed when nothing was evicted: the
Deployment controller copies a Deployment's annotations onto its ReplicaSet and never removes
one there, so a removed record would live on in that copy saying the pods were deleted (and a
``kubectl rollout undo`` to that ReplicaSet would bring it back); a corrected one replaces the
copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from remediations.base import ActionError, ActionRefused, TransientActionError
from remediations.kubernetes.api_errors import is_api_exception
from remediations.kubernetes.evict import Evicted, EvictionRefused
from remediations.kubernetes.kubeapi import JSON_PATCH, KubeApi
from remediations.kubernetes.objects import WORKLOADS, json_pointer, object_ref
from remediations.kubernetes.replay import WRITE_PREFIX, WriteRecord
from remediations.targets import Target

__all__ = [
    "MIRROR_ANNOTATION",
    "correct_record",
    "correct_stopped",
    "correct_unplanned",
    "correct_unreached",
    "holder_of",
    "own_record",
    "recorded_holder",
    "refuse_unreplaced",
]

# The kubelet's annotation on the mirror of a static pod (``kubetypes.ConfigMirrorAnnotationKey``).
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"


def refuse_unreplaced(pod: Mapping[str, Any], target: Target) -> None:
    """ActionRefused for a Pod target that no controller would replace: a bare pod (no
    ``ownerReferences`` entry with ``controller: true``: deleted, it and its work are gone)
    or a static pod's mirror (the kubelet's ``kubernetes.io/config.mirror`` annotation, or a
    Node as its controller: deleting the mirror restarts nothing, the kubelet runs the static
    pod on and makes the mirror again)."""
    metadata = pod.get("metadata") or {}
    ref = _controller_ref(pod)
    if MIRROR_ANNOTATION in (metadata.get("annotations") or {}) or (
        ref is not None and ref.get("kind") == "Node"
    ):
        node = (pod.get("spec") or {}).get("nodeName") or (ref or {}).get("name") or "its node"
        raise ActionRefused(
            f"{object_ref(target)} is a static pod's mirror (the kubelet of {node} runs it "
            "from a manifest on the node): deleting it does not restart it; restart it on "
            "the node, or delete a pod that a workload controls"
        )
    if ref is None:
        raise ActionRefused(
            f"{object_ref(target)} has no controller (no ownerReference with controller: "
            "true): no controller would replace it, so deleting it would lose it and its "
            "work; delete it by hand if that is meant"
        )


def _controller_ref(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


async def holder_of(
    api: KubeApi, pod: Mapping[str, Any], namespace: str
) -> tuple[Target, dict[str, Any]] | None:
    """The workload keeping the record of ``pod``'s deletion, and that workload as read: the
    StatefulSet or DaemonSet controlling it, or the Deployment controlling its ReplicaSet
    (its uid checked against the ReplicaSet's ownerReference, the ReplicaSet's against the
    pod's). None for a ReplicaSet no Deployment controls, or one gone meanwhile. The
    ReplicaSet is listed by name (``replicasets`` ``list``, which the role grants already)."""
    ref = _controller_ref(pod)
    if ref is None:
        return None
    kind, name = str(ref.get("kind")), str(ref.get("name"))
    if kind in ("StatefulSet", "DaemonSet"):
        holder = Target(kind, namespace, name)
        return holder, await api.read_workload(holder)
    if kind != "ReplicaSet":
        return None
    listed = await api.call(
        f"ReplicaSet {namespace}/{name}",
        lambda: api.apps.list_namespaced_replica_set(
            namespace, field_selector=f"metadata.name={name}", **api.read_opts()
        ),
    )
    owner = next(
        (
            _controller_ref(rs)
            for rs in api.to_dict(listed).get("items") or []
            if (rs.get("metadata") or {}).get("uid") == ref.get("uid")
        ),
        None,
    )
    if owner is None or owner.get("kind") != "Deployment":
        return None
    holder = Target("Deployment", namespace, str(owner.get("name")))
    found = await _read_if_present(api, holder)
    if found is None or (found.get("metadata") or {}).get("uid") != owner.get("uid"):
        return None
    return holder, found


async def recorded_holder(api: KubeApi, target: Target) -> tuple[Target, dict[str, Any]] | None:
    """For a Pod ``target`` that is gone: the workload holding this step's record of its
    deletion, and that workload as read; None when none is found (outside a run's steps, or
    this step wrote no record). The pod's controller named it: ``<replicaset>-<5 chars>`` for
    a ReplicaSet's (its ReplicaSet ``<deployment>-<hash>``), a DaemonSet's the same from the
    DaemonSet's name, ``<statefulset>-<ordinal>``. Each such workload is read and counts only
    with a record of this step naming the pod. A name the controller had to shorten (over 58
    characters before the suffix) is not traced back: such a step, taken up after its pod
    is gone, finds nothing to delete, as before."""
    if api.step is None or "-" not in target.name:
        return None
    base = target.name.rsplit("-", 1)[0]
    candidates = [Target("StatefulSet", target.namespace, base)]
    candidates.append(Target("DaemonSet", target.namespace, base))
    if "-" in base:
        candidates.insert(0, Target("Deployment", target.namespace, base.rsplit("-", 1)[0]))
    for holder in candidates:
        found = await _read_if_present(api, holder)
        record = api.earlier_write(found) if found is not None else None
        pods = (record.change.get("before") or {}).get("pods") if record is not None else None
        if found is not None and target.name in (pods or []):
            return holder, found
    return None


async def _read_if_present(api: KubeApi, target: Target) -> dict[str, Any] | None:
    """GET the workload ``target`` as a dict; None when it does not exist."""
    method = getattr(api.apps, f"read_namespaced_{WORKLOADS[target.kind]}")
    try:
        obj = await api.call(
            object_ref(target),
            lambda: method(target.name, target.namespace, **api.read_opts()),
            allow=(404,),
        )
    except Exception as exc:
        if not is_api_exception(exc):
            raise
        return None
    return api.to_dict(obj)


def own_record(api: KubeApi, annotations: Mapping[str, str | None]) -> tuple[str, str] | None:
    """This step's write record among ``annotations`` (an object's, or the ones a write sends,
    None for a key it removes): its key and its value as stored; None when it is not there."""
    for key, value in annotations.items():
        if value is None or not key.startswith(WRITE_PREFIX) or api.step is None:
            continue
        record = WriteRecord.from_json(value)
        if record is not None and record.action == api.action and api.step.wrote(key, record):
            return key, value
    return None


async def correct_record(
    api: KubeApi, holder: Target, stored: tuple[str, str], refused: EvictionRefused
) -> NoReturn:
    """After ``refused`` stopped the evictions: make this step's record on ``holder`` (key and
    value as ``stored``, ``own_record``) say what happened, then raise ``refused``.

    The record's ``after`` becomes ``{"deleted": refused.evicted}`` and its ``extra`` gains
    ``not_deleted`` (``refused.not_evicted``) and ``refused`` (the reason); its ``change`` and
    ``at`` stay. One JSON Patch: a ``test`` that the key still holds ``stored``, then its
    ``replace``. A failed test (422: another write took the slot since) leaves it: it no longer
    holds this record. A correction that fails otherwise is named in the refusal raised
    instead (same ``may_have_acted``), so the step says the record still claims every pod
    deleted."""
    said = {"not_deleted": refused.not_evicted, "refused": refused.reason}
    await _corrected(api, holder, stored, refused.evicted, said, refused)
    raise refused


async def correct_unreached(
    api: KubeApi,
    holder: Target,
    stored: tuple[str, str],
    failed: TransientActionError,
    chosen: list[str],
) -> NoReturn:
    """After ``failed`` (retries run out, ``may_have_acted`` False: no eviction reached the
    API server) ended a step for good (``ActionContext.retried_if_unreached`` False): make
    this step's record on ``holder`` say that none of the ``chosen`` pods was deleted, as
    ``correct_record`` does for a refusal (``extra``: ``not_deleted``, and ``not_reached``,
    the failure), then raise ``failed``. A correction that fails too (the same outage, most
    likely) raises a TransientActionError, still ``may_have_acted`` False, that says the
    record still claims every pod deleted."""
    said = {"not_deleted": chosen, "not_reached": failed.message}
    await _corrected(api, holder, stored, [], said, failed)
    raise failed


async def correct_stopped(
    api: KubeApi,
    holder: Target,
    stored: tuple[str, str],
    failed: ActionError,
    done: Evicted,
    chosen: list[str],
    *,
    taken_up: bool = False,
) -> NoReturn:
    """After ``failed`` (not a refusal: ``correct_record``) stopped the evictions of
    ``chosen`` with ``done`` as far as they went, the step's end (a failure that may have
    acted, or that is not one of a system out of reach): make this step's record on
    ``holder`` say what was deleted, ``done.now`` (and ``done.gone`` when ``taken_up``, as
    ``evict_pods`` counts them), and in its ``extra`` which were not (``not_deleted``: the
    failed pod, unless ``unsure``, and the ones after it, never tried), which may have been
    (``unsure``: the failed pod, after a try that got no answer) and why (``failed``); then
    raise ``failed``. Before, the record went on saying every chosen pod was deleted after
    the first of two was evicted and the second's eviction failed."""
    evicted = done.now + (done.gone if taken_up else [])
    tried = len(done.now) + len(done.gone)
    left = [n for n in chosen[tried:] if n not in done.unsure]
    said: dict[str, Any] = {"not_deleted": left, "failed": failed.message}
    if done.unsure:
        said["unsure"] = list(done.unsure)
    await _corrected(api, holder, stored, evicted, said, failed)
    raise failed


async def correct_unplanned(api: KubeApi, target: Target, failed: TransientActionError) -> NoReturn:
    """After ``failed`` (a read that reached nothing, ``may_have_acted`` False) ended a step
    for good in its plan (``ActionContext.retried_if_unreached`` False, its wait over): the
    record an earlier try of the step wrote before evictions that could not reach the API
    server (it waited for them) says every chosen pod was deleted, and none was. Find it, on
    the target workload or, for a Pod target, on the workload the pod's name was made from
    (``recorded_holder``), and correct it as ``correct_unreached`` does (``not_deleted``:
    the pods its change chose); then raise ``failed``. No record: nothing to correct. A read
    or a correction that fails too (the same outage, most likely) raises a
    TransientActionError, still ``may_have_acted`` False, saying a record may still claim
    the pods deleted."""
    where = object_ref(target) if target.kind != "Pod" else f"the workload of {object_ref(target)}"
    try:
        if target.kind == "Pod":
            found = await recorded_holder(api, target)
        else:
            obj = await _read_if_present(api, target)
            found = (target, obj) if obj is not None else None
    except ActionError as exc:
        raise TransientActionError(
            f"{failed.message}; a write record an earlier try of this step left on {where} "
            f"(if it wrote one) may still say every chosen pod was deleted, reading it to "
            f"correct it failed: {exc.message}",
            may_have_acted=False,
        ) from failed
    if found is None:
        raise failed
    holder, obj = found
    stored = own_record(api, (obj.get("metadata") or {}).get("annotations") or {})
    record = WriteRecord.from_json(stored[1]) if stored is not None else None
    if stored is None or record is None:
        raise failed
    chosen = [str(n) for n in (record.change.get("before") or {}).get("pods") or []]
    await correct_unreached(api, holder, stored, failed, chosen)


async def _corrected(
    api: KubeApi,
    holder: Target,
    stored: tuple[str, str],
    evicted: list[str],
    said: dict[str, Any],
    error: ActionError,
) -> bool:
    """Replace this step's record on ``holder`` (``stored``: its key and value) by one whose
    ``after`` is ``{"deleted": evicted}`` and whose ``extra`` gains ``said``, ``change`` and
    ``at`` kept (see ``correct_record``). False when ``stored`` cannot be read as a record
    (nothing sent); True otherwise, a failed ``test`` included. A patch that fails raises
    ``error``'s kind (ActionRefused for a refusal, else TransientActionError) naming the
    record left uncorrected, ``error.may_have_acted`` kept."""
    key, value = stored
    old = WriteRecord.from_json(value)
    if old is None:
        return False
    new = WriteRecord(
        action=old.action,
        change=old.change,
        after={"deleted": evicted},
        run_id=old.run_id,
        phase=old.phase,
        step=old.step,
        extra={**old.extra, **said},
        at=old.at,
    )
    path = f"/metadata/annotations/{json_pointer(key)}"
    ops = [
        {"op": "test", "path": path, "value": value},
        {"op": "replace", "path": path, "value": new.to_json()},
    ]
    try:
        await api.patch_workload(holder, ops, JSON_PATCH, allow=(422,))
    except ActionError as exc:
        message = (
            f"{error.message}; the step's write record on {object_ref(holder)} (annotation "
            f"{key}) still says every chosen pod was deleted, correcting it failed: "
            f"{exc.message}"
        )
        kind = ActionRefused if isinstance(error, ActionRefused) else TransientActionError
        raise kind(message, may_have_acted=error.may_have_acted) from error
    except Exception as exc:  # after ActionError, which is never an ApiException
        if not is_api_exception(exc):
            raise
    return True
