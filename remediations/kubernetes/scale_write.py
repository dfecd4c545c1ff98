"""The write of ``kubernetes.scale``: one conditioned PATCH of the count, re-read and sent
again on a conflict while the count is still the one the plan started from.

The resourceVersion the PATCH carries is bumped by every status write of the controller: a
409 is usually that, not a rival scaler. A 409 answered to a retried PATCH may also follow a
try that landed with its answer lost (its own write moved the resourceVersion): the re-read
finds this step's record then, and the write is done. Until a re-read has shown that no such
try landed, any failure (the re-read's own, the next PATCH's) may have acted, whatever its
own tries say (``retry.failure_may_have_acted``: a re-read that cannot connect has not shown
that the PATCH before it did not land).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from remediations.base import ActionError, ActionRefused
from remediations.kubernetes.api import MERGE_PATCH, KubeApi, WriteConflict
from remediations.kubernetes.api_errors import is_api_exception
from remediations.kubernetes.objects import object_ref
from remediations.targets import Target

__all__ = ["write_count"]


async def write_count(
    api: KubeApi,
    target: Target,
    body: Callable[[dict[str, Any]], dict[str, Any]],
    obj: dict[str, Any],
    current: int,
    desired: int,
    *,
    attempts: int,
) -> dict[str, Any]:
    """PATCH ``body(read)`` (a merge patch conditioned on ``read``'s resourceVersion, ``read``
    first ``obj`` as the plan read it) to the workload ``target``; the object written, as a
    dict. On a 409, re-read: this step's record there (or, outside a run's steps, the count
    already ``desired``) means an earlier try landed, and that object is returned; a count
    other than ``current`` is refused (ActionRefused: changed concurrently); else sent again,
    ``attempts`` conflicts at most, then refused. Other failures as ``retry.call`` maps them,
    ``may_have_acted`` also while a retried PATCH's 409 is not yet read back (the module's
    docstring). One deleted and created again since (another uid) with the count ``current``
    raises WriteConflict: the step is planned again from it."""
    read = obj
    unsure = False
    try:
        for _ in range(attempts):
            sent: list[None] = []
            try:
                return await api.patch_workload(
                    target, body(read), MERGE_PATCH, allow=(409,), sent=sent
                )
            except Exception as exc:
                if not is_api_exception(exc):
                    raise
                unsure = unsure or len(sent) > 1
            read = await api.read_workload(target)
            now = int((read.get("spec") or {}).get("replicas") or 0)
            if not api.ctx.dry_run and (
                api.earlier_write(read) is not None or (api.step is None and now == desired)
            ):
                return read  # an earlier attempt landed but its answer was lost
            unsure = False  # read back without this step's record: no earlier try landed
            if now != current:
                raise ActionRefused(
                    f"replicas of {object_ref(target)} changed concurrently from {current} "
                    f"to {now}; not scaling"
                ) from None
            if _uid(read) != _uid(obj):
                # Deleted and created again since the plan read it, with the count it read:
                # what the plan decided (a restore above all: this run's record was on the
                # old one) is planned again from the new one (KubeAction.run), as kubectl
                # scale re-reads it.
                raise WriteConflict(
                    f"{object_ref(target)} was deleted and created again since it was read "
                    f"(uid {_uid(read)}, not {_uid(obj)})"
                )
    except ActionError as exc:
        exc.may_have_acted = exc.may_have_acted or unsure
        raise
    raise ActionRefused(f"{object_ref(target)} kept changing ({attempts} conflicts); not scaling")


def _uid(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")
