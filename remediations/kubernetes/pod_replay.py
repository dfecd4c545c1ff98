"""``kubernetes.delete_pod`` taken up again: the plan of a step that finds its own write record
on the workload holding its pods (``replay_plan``), and when a failed eviction ends the step
(``stops_for_good``). See remediations/kubernetes/pods.py for the record and the evictions.
"""

from __future__ import annotations

from typing import Any, TypeGuard

from remediations.base import ActionError, ActionRefused, TransientActionError
from remediations.kubernetes.api import KubeApi, WritePlan
from remediations.kubernetes.evict import Evicted, EvictionRefused, evict_pods
from remediations.kubernetes.pod_holder import correct_record, correct_stopped, correct_unreached
from remediations.kubernetes.replay import WriteRecord
from remediations.kubernetes.retry import RetryPolicy
from remediations.targets import Target

__all__ = ["replay_plan", "stops_for_good", "unreached"]


def unreached(exc: ActionError) -> TypeGuard[TransientActionError]:
    """Whether ``exc`` reached nothing: retries run out, no eviction sent that could act."""
    return isinstance(exc, TransientActionError) and not exc.may_have_acted


def stops_for_good(api: KubeApi, exc: ActionError) -> bool:
    """Whether ``exc`` ends the step, rather than the step waiting for the API server (its
    record kept for the next try: ``ActionContext.retried_if_unreached``)."""
    return not (unreached(exc) and api.ctx.retried_if_unreached)


def replay_plan(
    api: KubeApi,
    ns: str,
    held: tuple[Target, tuple[str, str] | None],
    record: WriteRecord,
    grace_period_seconds: int | None,
    pending: RetryPolicy,
) -> WritePlan:
    """The plan of a step taken up again that finds its own ``record`` on the workload
    ``held`` names (with the record's key and value as stored there: ``own_record``): the
    recorded change (so an approval of it still matches), carried out by evicting the
    recorded pods again (only them: never more than the step chose). The record is written
    before the evictions, so a crash between the two left them undone; each eviction is
    bound to its pod's uid, so a replacement is never evicted. Result.after: the recorded
    pods, all gone by then; the message says which were evicted now and which were already
    gone (most likely by the earlier attempt). A refusal that still stops one ends the step
    as the first attempt's did (``evict_pods``), the record corrected as then
    (``correct_record``: those gone count as evicted; ``correct_unreached`` for a last try
    whose evictions reached nothing)."""
    change = WritePlan.replayed(record).change
    names = [str(n) for n in change.before.get("pods") or []]
    uids = [str(u) for u in change.preconditions.get("uids") or []]
    if len(names) != len(uids):
        raise ActionRefused(
            f"the write record of {record.phase} step {record.step} names pods "
            f"{names} but holds {len(uids)} uid(s); not deleting anything"
        )

    async def write() -> dict[str, Any]:
        pods = list(zip(names, uids, strict=True))
        holder, stored = held
        done = Evicted()
        try:
            await evict_pods(
                api, ns, pods, grace_period_seconds, taken_up=True, pending=pending, progress=done
            )
        except EvictionRefused as exc:
            if stored is None:
                raise
            await correct_record(api, holder, stored, exc)
        except ActionError as exc:
            # As the first try's write: the last try that reached nothing says so, and a
            # failure that ends the step says what went before it.
            if stored is None or not stops_for_good(api, exc):
                raise
            if unreached(exc):
                await correct_unreached(api, holder, stored, exc, names)
            await correct_stopped(api, holder, stored, exc, done, names, taken_up=True)
        return {"deleted": names, "now": done.now, "gone": done.gone}

    def report(written: dict[str, Any]) -> str:
        step = f"{record.phase} step {record.step}, record written {record.at}"
        if not written["now"]:
            return (
                f"already applied by this run before a restart ({step}), its pods were "
                f"already gone: {change.summary}"
            )
        already = ", ".join(written["gone"]) or "none"
        return (
            f"taken up after a restart ({step}) before every eviction was done: deleted "
            f"{', '.join(written['now'])} now; already gone: {already}; {change.summary}"
        )

    return WritePlan(change, write, lambda written: {"deleted": written["deleted"]}, report=report)
