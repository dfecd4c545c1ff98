"""What counts as a release of a Deployment: for the ``rolled_out_within`` conditions
(``probe.newest_rollout``) and for ``kubernetes.rollout_undo``'s default revision. Pure:
plain-dict objects, no client, no I/O.

A release is what an engineer or a CD pipeline ships: any change of the pod template (an
image, a command, a volume, an environment variable or resource a human changed), as the
revisions of ``kubectl rollout history`` record them. Two kinds of new revision are not one:

- a restart: only ``kubectl.kubernetes.io/restartedAt`` (kubectl's or remediator's
  ``rollout_restart``) or remediator's own pod-template annotations (``remediator.io/...``)
  changed. Same code, same configuration, new pods.
- remediator's own edit of one container (``kubernetes.set_resources``,
  ``kubernetes.set_env``), known by the step's write record, which the Deployment controller
  copies from the Deployment onto the ReplicaSet it creates for that template: a field whose
  value went exactly from the record's ``before`` to its ``after`` is the remediator's.

Why: an error rate that follows remediator's restart or its memory raise is not explained by a
release. Rolling back to the template before it would only restart the pods, or undo a
remediation, and leave the cause in place. Configuration a human shipped counts, though: CD
ships configuration as env and resources changes, and they break things as images do.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from typing import Any

from remediations.kubernetes import quantity
from remediations.kubernetes.objects import (
    RESTART_RUN_ANNOTATION,
    RESTARTED_AT,
    is_remediator_key,
    pod_template,
)
from remediations.kubernetes.replay import records_of

__all__ = [
    "OWN_EDITS",
    "POD_TEMPLATE_HASH",
    "comparable",
    "is_release",
    "newest_release",
    "only_restart_apart",
]

POD_TEMPLATE_HASH = "pod-template-hash"
# The actions whose template edits are remediator's own, not a release (``container.py``; a
# unit test checks these are their names).
OWN_EDITS = frozenset({"kubernetes.set_resources", "kubernetes.set_env"})


def comparable(template: Mapping[str, Any]) -> dict[str, Any]:
    """``template`` (a pod template) without what a restart changes and what the controller
    adds: the ``pod-template-hash`` label, ``restartedAt`` and ``remediator.io`` annotations;
    empty ``env`` lists and ``resources`` sections dropped. Equal results: the same release."""
    out = copy.deepcopy(dict(template))
    metadata = dict(out.get("metadata") or {})
    labels = {k: v for k, v in (metadata.get("labels") or {}).items() if k != POD_TEMPLATE_HASH}
    annotations = {
        k: v
        for k, v in (metadata.get("annotations") or {}).items()
        if k not in (RESTARTED_AT, RESTART_RUN_ANNOTATION) and not is_remediator_key(k)
    }
    for key, value in (("labels", labels), ("annotations", annotations)):
        if value:
            metadata[key] = value
        else:
            metadata.pop(key, None)
    out["metadata"] = metadata
    for container in (out.get("spec") or {}).get("containers") or []:
        resources = {k: v for k, v in (container.get("resources") or {}).items() if v}
        if resources:
            container["resources"] = resources
        else:
            container.pop("resources", None)
        if not container.get("env"):
            container.pop("env", None)
    return out


def only_restart_apart(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether pod templates ``a`` and ``b`` differ at most by a restart (``comparable``)."""
    return _same(comparable(a), comparable(b))


def is_release(newer: Mapping[str, Any], older: Mapping[str, Any]) -> bool:
    """Whether ReplicaSet ``newer`` (the revision after ``older``) is a release: its template
    differs from ``older``'s by more than a restart and remediator's recorded edits (module
    docstring). Both are plain-dict ReplicaSets."""
    before = pod_template(older)
    return not _same(comparable(_without_own_edits(newer, before)), comparable(before))


def newest_release(history: Sequence[Mapping[str, Any]]) -> int:
    """The index in ``history`` (ReplicaSets by ascending revision, ending at the current one)
    of the newest release: the newest one that ``is_release`` after the one before it, or the
    oldest (0) when none is. ValueError for an empty ``history``."""
    if not history:
        raise ValueError("no revision in the history")
    for index in range(len(history) - 1, 0, -1):
        if is_release(history[index], history[index - 1]):
            return index
    return 0


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _containers(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c.get("name", ""): c for c in (template.get("spec") or {}).get("containers") or []}


def _without_own_edits(rs: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
    """``rs``'s template with every field a set_resources / set_env record on ``rs`` changed
    from ``before``'s value to its own set back to ``before``'s. A field whose values are not
    exactly the record's before and after is left alone: the record is of another revision."""
    template = copy.deepcopy(pod_template(rs))
    newer, older = _containers(template), _containers(before)
    for record in records_of(rs).values():
        if record.action not in OWN_EDITS:
            continue
        was, now = record.change.get("before") or {}, record.change.get("after") or {}
        name = str(now.get("container") or "")
        if name not in newer or name not in older:
            continue
        if record.action == "kubernetes.set_env":
            _undo_env(newer[name], older[name], was, now)
        else:
            _undo_resources(newer[name], older[name], was, now)
    return template


def _undo_resources(
    newer: dict[str, Any], older: Mapping[str, Any], was: Mapping[str, Any], now: Mapping[str, Any]
) -> None:
    for section in ("limits", "requests"):
        for resource, after in (now.get(section) or {}).items():
            before = (was.get(section) or {}).get(resource)
            new_section = (newer.get("resources") or {}).get(section) or {}
            old_value = ((older.get("resources") or {}).get(section) or {}).get(resource)
            if not (
                quantity.equal(new_section.get(resource), after)
                and quantity.equal(old_value, before)
            ):
                continue
            resources = newer.setdefault("resources", {})
            if old_value is None:
                resources.setdefault(section, {}).pop(resource, None)
            else:
                resources.setdefault(section, {})[resource] = old_value


def _env_var(container: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    for var in container.get("env") or []:
        if var.get("name") == name:
            return dict(var)
    return None


def _undo_env(
    newer: dict[str, Any], older: Mapping[str, Any], was: Mapping[str, Any], now: Mapping[str, Any]
) -> None:
    name = str(now.get("name") or "")
    new_var, old_var = _env_var(newer, name), _env_var(older, name)
    if new_var is None or "valueFrom" in new_var or new_var.get("value", "") != now.get("value"):
        return
    if old_var is None:
        matches = was.get("value") is None and "valueFrom" not in was
    elif "valueFrom" in old_var:
        matches = _same(old_var["valueFrom"], was.get("valueFrom") or {})
    else:
        matches = "valueFrom" not in was and old_var.get("value", "") == was.get("value")
    if not matches:
        return
    env = newer.get("env") or []
    if old_var is None:
        newer["env"] = [v for v in env if v.get("name") != name]
    else:
        newer["env"] = [old_var if v.get("name") == name else v for v in env]
