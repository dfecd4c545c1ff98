"""Remediator's own edits of a container in a ReplicaSet's template, told apart from a
human's, for ``release.is_release``. Pure: plain-dict objects, no client, no I/O.

``kubernetes.set_resources`` and ``kubernetes.set_env`` leave a write record on the Deployment
that the Deployment controller copies onto the ReplicaSet it creates for the new template
(``replay.records_of``). A field whose value went exactly from a record's ``before`` to its
``after`` is the remediator's; any other change of it is not.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from remediations.kubernetes import quantity
from remediations.kubernetes.objects import all_containers, pod_template
from remediations.kubernetes.replay import records_of

__all__ = ["OWN_EDITS", "same", "without_own_edits"]

# The actions whose template edits are remediator's own, not a release (``container.py``; a
# unit test checks these are their names).
OWN_EDITS = frozenset({"kubernetes.set_resources", "kubernetes.set_env"})


def same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether plain-dict objects ``a`` and ``b`` are equal as JSON (key order aside)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def _containers(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    # Init containers too: set_resources and set_env edit them as kubectl's set does.
    return {c.get("name", ""): c for _key, c in all_containers(template)}


def without_own_edits(rs: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
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
        matches = same(old_var["valueFrom"], was.get("valueFrom") or {})
    else:
        matches = "valueFrom" not in was and old_var.get("value", "") == was.get("value")
    if not matches:
        return
    env = newer.get("env") or []
    if old_var is None:
        newer["env"] = [v for v in env if v.get("name") != name]
    else:
        newer["env"] = [old_var if v.get("name") == name else v for v in env]
