"""Reading the plain-dict form of Kubernetes objects: pod templates, containers, revisions,
selectors. Pure: no client library, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remediations.base import ActionRefused
from remediations.targets import Target

__all__ = [
    "CONTAINER_LISTS",
    "RESTARTED_AT",
    "RESTART_RUN_ANNOTATION",
    "REVISION",
    "REVISION_HISTORY",
    "WORKLOADS",
    "all_containers",
    "controller_uid",
    "env_edit",
    "find_container",
    "held_back",
    "is_controlled_by",
    "is_remediator_key",
    "json_pointer",
    "object_ref",
    "pod_template",
    "refuse_duplicate_env",
    "refuse_paused",
    "refuse_paused_edit",
    "revision_of",
    "selector_matches",
    "selector_string",
    "template_edit",
    "template_images",
]

REVISION = "deployment.kubernetes.io/revision"
# The revisions a ReplicaSet held before a rollback gave it its current one, comma-separated.
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
# The pod-template annotation of ``kubectl rollout restart`` (and of ``rollout_restart``).
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
# Set in the pod template next to restartedAt, so a retried step of the same run does not
# restart the workload a second time.
RESTART_RUN_ANNOTATION = "remediator.io/restart-run-id"
# apps/v1 method-name infix for each workload kind with a pod template.
WORKLOADS = {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}


def object_ref(target: Target) -> str:
    """``"Deployment shop/web"``: how messages name a Kubernetes target."""
    return f"{target.kind} {target.namespace}/{target.name}"


def json_pointer(key: str) -> str:
    """``key`` (an annotation or label key) as one JSON Pointer reference token (RFC 6901:
    ``~`` as ``~0``, ``/`` as ``~1``), for a JSON Patch path such as
    ``/metadata/annotations/<token>``."""
    return key.replace("~", "~0").replace("/", "~1")


def is_remediator_key(key: str) -> bool:
    """Whether annotation ``key`` is remediator's own: its prefix is ``remediator.io`` or a
    subdomain of it (``remediator.io/run-id``, ``write.remediator.io/slot-0``)."""
    prefix, slash, _ = key.partition("/")
    return bool(slash) and (prefix == "remediator.io" or prefix.endswith(".remediator.io"))


def pod_template(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``spec.template`` of a workload or ReplicaSet (``{}`` when absent)."""
    template: dict[str, Any] = (obj.get("spec") or {}).get("template") or {}
    return template


# The lists of a pod template whose containers kubectl's ``set env`` and ``set resources``
# select from by name (``-c``; ``pkg/cmd/set``): an init container, a native sidecar among
# them (``restartPolicy: Always``), is edited as a container is. Names are unique across both.
CONTAINER_LISTS = ("containers", "initContainers")


def all_containers(template: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(list, container) for every container of a pod template, the ``containers`` first,
    then the ``initContainers`` (``CONTAINER_LISTS``)."""
    spec = template.get("spec") or {}
    return [(key, c) for key in CONTAINER_LISTS for c in spec.get(key) or []]


def find_container(obj: Mapping[str, Any], name: str, target: Target) -> dict[str, Any]:
    """The container ``name`` of ``obj``'s pod template, or its init container of that name
    (``CONTAINER_LISTS``). Raises ActionRefused naming the containers there are."""
    found = all_containers(pod_template(obj))
    for _key, container in found:
        if container.get("name") == name:
            return container
    names = ", ".join(c.get("name", "?") for _key, c in found) or "none"
    raise ActionRefused(
        f"container {name!r} not found in {object_ref(target)}; its containers: {names}"
    )


def template_edit(obj: Mapping[str, Any], edit: Mapping[str, Any]) -> dict[str, Any]:
    """The strategic merge patch of ``obj``'s pod template that merges ``edit`` (a partial
    container, with its ``name``) into the container of that name, in the list that holds it
    (``containers``, or ``initContainers`` for an init container: ``all_containers``)."""
    key = next(
        (k for k, c in all_containers(pod_template(obj)) if c.get("name") == edit.get("name")),
        "containers",
    )
    return {"spec": {key: [dict(edit)]}}


def held_back(obj: Mapping[str, Any]) -> str:
    """What the record of a template write must add when the write replaces some or all pods
    only later, or never, by itself (kubectl writes the same and says "restarted" or "env
    updated"); "" for every other workload:

    - a StatefulSet or DaemonSet whose ``updateStrategy`` is ``OnDelete`` takes the new
      template only into pods created after someone deletes the old ones;
    - a StatefulSet whose ``rollingUpdate.partition`` is P > 0 (a staged rollout) replaces
      only the pods of ordinal P and up; one below P is recreated from the old template even
      when deleted, and with P at or above ``replicas`` no pod is replaced."""
    spec = obj.get("spec") or {}
    strategy = spec.get("updateStrategy") or {}
    if strategy.get("type") == "OnDelete":
        return (
            "; its updateStrategy is OnDelete, so no pod is replaced until it is deleted "
            "(a kubernetes.delete_pod step on the same target does that)"
        )
    partition = int((strategy.get("rollingUpdate") or {}).get("partition") or 0)
    if partition <= 0:
        return ""
    # The API server defaults replicas to 1.
    replicas = int(spec.get("replicas") or 0) if "replicas" in spec else 1
    which = (
        f"no pod of its {replicas} is replaced"
        if partition >= replicas
        else f"only the pods of ordinal {partition} and up are replaced"
    )
    return (
        f"; its updateStrategy's partition is {partition}, so {which}: a pod below the "
        "partition keeps the old template, even when deleted"
    )


def template_images(template: Mapping[str, Any]) -> dict[str, str]:
    """Container name -> image, for before/after records: init containers' too (a native
    sidecar's image is as much what a rollback changes)."""
    return {c.get("name", "?"): c.get("image", "") for _key, c in all_containers(template)}


def refuse_paused(obj: Mapping[str, Any], target: Target, verb: str) -> None:
    """Raise ActionRefused for a paused Deployment, as kubectl does: its controller would not
    roll out what we write until someone resumes it."""
    if target.kind == "Deployment" and (obj.get("spec") or {}).get("paused"):
        raise ActionRefused(
            f"can't {verb} paused deployment {target.namespace}/{target.name} "
            "(run rollout resume first)"
        )


def refuse_duplicate_env(container: Mapping[str, Any], name: str, target: Target) -> None:
    """Raise ActionRefused when ``container`` (of ``target``'s pod template) defines the
    environment variable ``name`` more than once (``set_env``): the API server keeps such a
    list, the kubelet gives the container the last definition, and a strategic merge patch
    keyed by name sets the first (``kubectl set env`` rewrites the list, dropping the later
    ones), so the step would report a value the container does not run with."""
    count = sum(1 for var in container.get("env") or [] if var.get("name") == name)
    if count > 1:
        raise ActionRefused(
            f"{name} is defined {count} times in container {container.get('name')} of "
            f"{object_ref(target)}: the container gets the last definition, and a patch keyed "
            f"by name changes only the first, so setting it would change nothing it runs "
            f"with; remove the duplicate definitions from the workload's manifest first"
        )


def env_edit(container: Mapping[str, Any], var: Mapping[str, Any]) -> dict[str, Any]:
    """The strategic merge patch of ``container`` (a pod template's, as read) that sets the
    environment variable ``var`` (an ``env`` item), in the place ``kubectl set env`` gives it:
    a variable the container has keeps its place, a new one goes after all the others (kubectl
    ``pkg/cmd/set/env``'s ``updateEnv``, sent with a ``$setElementOrder/env`` list). Without
    that list the API server puts an item new to a merged list first (apimachinery's
    ``strategicpatch`` ``mergeSortedSlice``), and the kubelet expands a ``$(NAME)`` in a value
    only from the variables defined before it: ``$(HOST):5432`` would stay literal text."""
    edit: dict[str, Any] = {"name": container.get("name"), "env": [dict(var)]}
    names = [item.get("name") for item in container.get("env") or []]
    if var.get("name") not in names:
        order = [*names, var.get("name")]
        edit["$setElementOrder/env"] = [{"name": name} for name in order]
    return edit


def refuse_paused_edit(obj: Mapping[str, Any], target: Target) -> None:
    """Raise ActionRefused for an edit of a paused Deployment's template (``set_resources``,
    ``set_env``): its controller rolls nothing out until someone resumes it, so the step would
    report a change no pod runs with, and the edit would roll out later together with whatever
    the owner changed meanwhile (a Deployment is paused to gather changes into one rollout).
    kubectl's ``set`` writes it anyway; remediator's restart and rollback refuse, as kubectl's
    ``rollout restart`` and ``rollout undo`` do (``refuse_paused``)."""
    if target.kind == "Deployment" and (obj.get("spec") or {}).get("paused"):
        raise ActionRefused(
            f"{object_ref(target)} is paused (spec.paused): a changed template would not roll "
            "out until someone resumes it, and would then roll out with whatever else changed "
            "meanwhile; not changing it"
        )


def revision_of(obj: Mapping[str, Any]) -> int | None:
    """The ``deployment.kubernetes.io/revision`` annotation as an int (None if absent or bad)."""
    raw = ((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid of ``obj``'s controller: its first ownerReference with ``controller: true``,
    as apimachinery's ``metav1.GetControllerOf`` (``pkg/apis/meta/v1/controller_ref.go``);
    None for an object no controller manages (a bare pod, an orphaned ReplicaSet)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            uid = ref.get("uid")
            return str(uid) if uid else None
    return None


def is_controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """Whether ``owner`` (a plain-dict object) is ``obj``'s controller, compared by uid as
    ``metav1.IsControlledBy`` does: a namesake owner created again has another uid. False
    when either side has no uid."""
    uid = (owner.get("metadata") or {}).get("uid")
    return bool(uid) and controller_uid(obj) == uid


def selector_string(selector: Mapping[str, Any]) -> str:
    """A LabelSelector (``matchLabels``, ``matchExpressions``) in the query-string syntax,
    e.g. ``"app=web,tier in (a,b)"``. ``""`` for an empty selector, which selects everything."""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether the LabelSelector ``selector`` (a plain dict; None for an absent one) selects
    an object with ``labels``, as ``metav1.LabelSelectorAsSelector`` then ``Matches`` decide:
    an absent selector selects nothing, an empty one everything; ``matchLabels`` and each of
    ``matchExpressions`` (``In``, ``NotIn``: also true without the key, ``Exists``,
    ``DoesNotExist``) must all hold. An unknown operator makes the selector invalid: it
    selects nothing (what the Eviction API makes of a budget with one)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In":
            held = present and labels[key] in values
        elif op == "NotIn":
            held = not present or labels[key] not in values
        elif op in ("Exists", "DoesNotExist"):
            held = present == (op == "Exists")
        else:
            return False
        if not held:
            return False
    return True
