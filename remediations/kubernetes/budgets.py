"""What the PodDisruptionBudgets of a namespace would let ``delete_pod`` evict, told ahead: for
its preview (what an engineer approves) and its dry run.

A server-side dry-run eviction does not use up the budget: the API server checks it and
decrements ``status.disruptionsAllowed`` in memory, but writes nothing back, so each pod of a
dry run is checked as if it were the only one. Two pods under a budget that allows one both
pass; live, the first is evicted and the second refused. So the step reads the budgets
(``read_budgets``: policy/v1, listed in the pods' namespace) and counts each one's allowance
down pod by pod, in the order the step evicts them (``forecast``), as the API server would.

Source followed: ``EvictionREST.Create`` and ``checkAndDecrement`` in
``pkg/registry/core/pod/storage/eviction.go`` of kubernetes v1.36:

- a pod that is Pending, has ended or is being deleted is deleted without a budget check;
- the budgets selecting a pod are those of its namespace whose selector matches its labels
  (``objects.selector_matches``: an absent selector selects nothing, an empty one every pod);
  more than one is refused (500), none lets it through;
- an unready pod (no ``Ready`` condition ``True``) passes without using the allowance when the
  budget's ``unhealthyPodEvictionPolicy`` is ``AlwaysAllow``, or when the budget is healthy
  (``currentHealthy >= desiredHealthy > 0``, the default ``IfHealthyBudget``);
- otherwise an allowance of 0 (or less) refuses (429), and each pod let through uses one.

A ready pod evicted no longer counts as healthy (the disruption controller takes it out of
``currentHealthy`` moments later), so the count of healthy pods goes down with it. A budget
whose status predates its latest change (``observedGeneration`` behind ``generation``) is
counted from that status, and the reason says so: the eviction itself waits for the
controller (``evict.BUDGET_PENDING``) and decides on the status it then computes.

A forecast, not a promise: the budgets move as pods become ready or not. The live step still
sends each eviction and the API server still decides (``evict``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from remediations.base import ActionRefused
from remediations.kubernetes.evict import BUDGET_ADVICE, MANY_BUDGETS_ADVICE, EvictionRefused
from remediations.kubernetes.kubeapi import KubeApi
from remediations.kubernetes.objects import selector_matches

__all__ = ["Forecast", "forecast", "read_budgets"]

# Phases the Eviction API deletes without a budget check (canIgnorePDB).
_UNCHECKED = frozenset({"Pending", "Succeeded", "Failed"})


@dataclass(frozen=True, slots=True)
class Forecast:
    """What the budgets would do to the step's pods, in eviction order. ``evicted``: the pods
    they let through before the first refusal; ``refused``: the pod a budget would refuse,
    then those after it, which the step would not try; ``reason``: why, naming the budget;
    ``advice``: what would let it through. Nothing refused: ``refused`` empty."""

    evicted: tuple[str, ...]
    refused: tuple[str, ...] = ()
    reason: str = ""
    advice: str = ""

    def after(self) -> dict[str, list[str]]:
        """The preview's after: ``{"deleted": [...]}``, with ``"not_deleted"`` (the pods a
        refusal would leave) when a budget would refuse one."""
        if not self.refused:
            return {"deleted": list(self.evicted)}
        return {"deleted": list(self.evicted), "not_deleted": list(self.refused)}

    def summary(self) -> str:
        """What to add to the preview's summary: "" when nothing would be refused."""
        if not self.refused:
            return ""
        done = ", ".join(self.evicted) or "none"
        return (
            f"; but a PodDisruptionBudget would refuse pod {self.refused[0]} ({self.reason}): "
            f"the step would end refused there, having evicted {done}, not "
            f"{', '.join(self.refused)}"
        )

    @classmethod
    def met(cls, refused: EvictionRefused) -> Forecast:
        """What a dry run met: the API server refused one of its dry-run evictions."""
        return cls(
            tuple(refused.evicted), tuple(refused.not_evicted), refused.reason, refused.advice
        )

    def refusal(self, ns: str) -> ActionRefused:
        """The refusal a dry run ends with when a budget would refuse a pod, worded as the
        live step's (``evict.evict_pods``), as not having acted (nothing was evicted)."""
        return ActionRefused(
            f"dry run, nothing evicted: a PodDisruptionBudget would refuse evicting pod "
            f"{self.refused[0]} in namespace {ns} ({self.reason}); would not evict: "
            f"{', '.join(self.refused)}; would evict: {', '.join(self.evicted) or 'none'}; "
            f"{self.advice}"
        )


async def read_budgets(api: KubeApi, ns: str) -> list[dict[str, Any]]:
    """The PodDisruptionBudgets of namespace ``ns`` (policy/v1 ``list``), as dicts, as the
    Eviction API reads them. Errors as ``retry.call`` maps them (403 when the role lacks
    ``list`` on ``poddisruptionbudgets``: the step is refused, not run blind)."""
    listed = await api.call(
        f"PodDisruptionBudgets in namespace {ns}",
        lambda: api.policy_api.list_namespaced_pod_disruption_budget(ns, **api.read_opts()),
    )
    items: list[dict[str, Any]] = api.to_dict(listed).get("items") or []
    return items


@dataclass
class _Budget:
    """One budget's state as the forecast counts it down."""

    name: str
    allowed: int
    healthy: int
    desired: int
    always_allow: bool
    stale: bool
    used: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, budget: Mapping[str, Any]) -> _Budget:
        status = budget.get("status") or {}
        metadata = budget.get("metadata") or {}
        policy = (budget.get("spec") or {}).get("unhealthyPodEvictionPolicy")
        return cls(
            name=str(metadata.get("name")),
            allowed=int(status.get("disruptionsAllowed") or 0),
            healthy=int(status.get("currentHealthy") or 0),
            desired=int(status.get("desiredHealthy") or 0),
            always_allow=policy == "AlwaysAllow",
            stale=int(status.get("observedGeneration") or 0) < int(metadata.get("generation") or 0),
        )

    def refusal(self) -> str:
        if self.used:
            said = (
                f"the disruption budget {self.name} allows {len(self.used)} disruption(s) now, "
                f"taken by {', '.join(self.used)}: it needs {self.desired} healthy pods and "
                f"would have {self.healthy}"
            )
        else:
            said = (
                f"the disruption budget {self.name} allows no disruption now: it needs "
                f"{self.desired} healthy pods and has {self.healthy}"
            )
        if self.stale:
            said += (
                "; its status predates its latest change, which the disruption controller "
                "has not observed yet"
            )
        return said


def _ready(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def forecast(pods: Sequence[Mapping[str, Any]], budgets: Sequence[Mapping[str, Any]]) -> Forecast:
    """What ``budgets`` (a namespace's, as dicts: ``read_budgets``) would do to ``pods`` (dicts,
    in the order the step evicts them): see the module docstring. Pure."""
    state: dict[str, _Budget] = {}
    evicted: list[str] = []
    names = [str((p.get("metadata") or {}).get("name")) for p in pods]
    for i, pod in enumerate(pods):
        metadata = pod.get("metadata") or {}
        phase = (pod.get("status") or {}).get("phase")
        labels = metadata.get("labels") or {}
        selecting = [
            b for b in budgets if selector_matches((b.get("spec") or {}).get("selector"), labels)
        ]
        if phase in _UNCHECKED or metadata.get("deletionTimestamp") or not selecting:
            evicted.append(names[i])
            continue
        if len(selecting) > 1:
            which = ", ".join(sorted(str((b.get("metadata") or {}).get("name")) for b in selecting))
            reason = (
                f"budgets {which} all select it, and the Eviction API does not support a pod "
                "that more than one PodDisruptionBudget selects"
            )
            return Forecast(tuple(evicted), tuple(names[i:]), reason, MANY_BUDGETS_ADVICE)
        first = selecting[0]
        budget = state.setdefault(str((first.get("metadata") or {}).get("name")), _Budget.of(first))
        ready = _ready(pod)
        if not ready and (
            budget.always_allow or (budget.healthy >= budget.desired and budget.desired > 0)
        ):
            evicted.append(names[i])  # an unready pod of a healthy budget: nothing used
            continue
        if budget.allowed <= 0:
            return Forecast(tuple(evicted), tuple(names[i:]), budget.refusal(), BUDGET_ADVICE)
        budget.allowed -= 1
        budget.healthy -= 1 if ready else 0
        budget.used.append(names[i])
        evicted.append(names[i])
    return Forecast(tuple(evicted))
