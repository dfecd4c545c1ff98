"""Evicting pods through the Eviction API, as ``kubectl drain`` does, for ``delete_pod``.

A plain DELETE ignores PodDisruptionBudgets: a step allowed up to ten pods could take a
workload below the availability its owners promised. An eviction (``POST
.../pods/{name}/eviction``, a policy/v1 Eviction) is a delete the API server first checks
against the budget that selects the pod: it answers 429 with a ``DisruptionBudget`` cause when
the budget allows no disruption now, and 500 when more than one budget selects the pod
(``retry.budget_refusal``). Neither is retried: the budget only allows more once its pods are
ready again, minutes later if ever, and the step ends saying which budget refused. Its other
429, "The disruption budget web is still being processed by the server" (``retry.budget_pending``:
the budget's status is older than its spec, its controller has not observed the latest change,
or the pod changed under the check), says nothing about the budget yet and passes once the
disruption controller catches up: it is sent again, ``BUDGET_PENDING`` bounding how long.

The Eviction carries the pod's uid as ``deleteOptions.preconditions`` (the pod looked at is
the one evicted, never a namesake that replaced it) and the grace period, as the DELETE did.
Source followed: ``pkg/registry/core/pod/storage/eviction.go`` (``EvictionREST.Create``) of
kubernetes v1.36: a pod that is Pending, has ended or is already terminating is deleted
without a budget check; an unready one when the budget is healthy enough.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from remediations.base import ActionError, ActionRefused, TransientActionError
from remediations.kubernetes.api_errors import is_api_exception
from remediations.kubernetes.kubeapi import JSON, KubeApi
from remediations.kubernetes.retry import (
    MANY_BUDGETS,
    RetryPolicy,
    budget_pending,
    budget_refusal,
    describe_failure,
    is_transient,
    refusal,
)
from remediations.request_timeout import request_timeout
from remediations.retrying import call_with_retries

__all__ = [
    "BUDGET_ADVICE",
    "BUDGET_PENDING",
    "EVICTION_ANSWER_S",
    "MANY_BUDGETS_ADVICE",
    "BudgetRefused",
    "Evicted",
    "EvictionRefused",
    "evict",
    "evict_pods",
]

# A 409 about the uid precondition: the pod was replaced (the eviction's own wording, and the
# store's for the DELETE it makes). Any other 409 of an eviction is its resourceVersion
# precondition: the pod changed while the API server checked it, and it is still there.
_UID_CONFLICT = re.compile(r"UID in (the )?precondition")

# How long one eviction's answer may take (seconds), at least. The API server retries a
# conflict inside the request (eviction.go's ``EvictionsRetry``): an eviction whose uid
# precondition no longer holds (a StatefulSet's namesake replaced the pod) is answered 409
# only after about 10 s (9.9 s measured, kube-apiserver 1.36), the default request timeout. A
# busy server answered past it: the try counted as one that may have evicted, and its retry's
# 409 was then reported "deleted db-0 now" of a pod this step never touched, 20 s later.
EVICTION_ANSWER_S = 30.0

# How long an eviction whose budget is still being processed is sent again: 6 tries, 0.5, 1,
# 2, 4 and 4 s apart (plus up to 0.2 s each), the last some 11.5 s after the first: past the
# 10 s the API server suggests in that answer (retryAfterSeconds), and far past the moment a
# running disruption controller has caught up (well under a second on an idle cluster).
BUDGET_PENDING = RetryPolicy(attempts=6, initial_wait=0.5, max_wait=4.0, jitter=0.2)


# What would let a refused eviction through: for a pod two budgets select, and otherwise.
MANY_BUDGETS_ADVICE = (
    "the Eviction API evicts no pod that two budgets select: leave one selecting it"
)
BUDGET_ADVICE = "the budget allows more once enough of its pods are ready"


class BudgetRefused(ActionRefused):
    """A PodDisruptionBudget refused evicting pod ``pod``: ``reason`` is the API server's
    word, naming the budget, without its final full stop; ``advice`` what would let it
    through. Nothing was deleted by that request."""

    def __init__(self, pod: str, reason: str) -> None:
        self.pod = pod
        self.reason = reason.strip().rstrip(".")
        self.advice = MANY_BUDGETS_ADVICE if MANY_BUDGETS in reason else BUDGET_ADVICE
        super().__init__(f"evicting pod {pod} was refused ({self.reason}); {self.advice}")


class EvictionRefused(ActionRefused):
    """``evict_pods`` stopped at a refused eviction (a budget's, or any other refusal of the
    API server's). ``evicted``: the pods it counts as evicted by the step (see
    ``evict_pods``), in order; ``not_evicted``: the refused pod and those after it, not
    tried; ``reason``: why, in a few words (the budget's, or the refusal's message);
    ``advice``: what would let a budget's refusal through, "" for any other refusal."""

    def __init__(
        self,
        message: str,
        *,
        evicted: list[str],
        not_evicted: list[str],
        reason: str,
        may_have_acted: bool,
        advice: str = "",
    ) -> None:
        super().__init__(message, may_have_acted=may_have_acted)
        self.evicted = evicted
        self.not_evicted = not_evicted
        self.reason = reason
        self.advice = advice


@dataclass
class Evicted:
    """What ``evict_pods`` did: ``now``, the pods this call evicted (or whose eviction's
    retry found them gone); ``gone``, those already gone or replaced before it; ``unsure``,
    the pod whose eviction failed after a try that may have evicted it (no answer)."""

    now: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    unsure: list[str] = field(default_factory=list)


async def evict(
    api: KubeApi,
    ns: str,
    name: str,
    uid: str,
    grace_period_seconds: int | None,
    *,
    pending: RetryPolicy = BUDGET_PENDING,
) -> Literal["evicted", "absent"]:
    """Evict pod ``ns/name`` on the condition that its uid is still ``uid``.

    ``"evicted"``: the API server accepted it, or answered 404 or a uid conflict after a try
    that got no answer (or a 5xx, or was throttled): that try may well have evicted it.
    ``"absent"``: 404 or a uid conflict otherwise: gone or replaced before this eviction. Raises
    BudgetRefused when a PodDisruptionBudget refuses it; sends it again, as ``pending`` says
    (attempts and waits; default ``BUDGET_PENDING``), while the budget is still being
    processed (``retry.budget_pending``), then raises TransientActionError naming the budget,
    ``may_have_acted`` only after such a try; other failures as ``retry.call`` maps them.
    """
    options: dict[str, Any] = {"preconditions": {"uid": uid}}
    if grace_period_seconds is not None:
        options["gracePeriodSeconds"] = grace_period_seconds
    kwargs: dict[str, Any] = {
        "_content_type": JSON,
        **api.read_opts(),
        # Room for the API server's own retries of a conflict (``EVICTION_ANSWER_S``).
        "_request_timeout": request_timeout(max(api.policy.request_timeout, EVICTION_ANSWER_S)),
    }
    if api.ctx.dry_run:
        # Both, equal: the API server takes the create options' dryRun into the Eviction's
        # deleteOptions and refuses the two when they differ (propagateDryRun).
        options["dryRun"] = ["All"]
        kwargs["dry_run"] = "All"
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": ns},
        "deleteOptions": options,
    }
    # A try failed in a way ``api.call`` retries (no answer, a 5xx, throttling): it may have
    # evicted the pod, and a later 404 or uid conflict may be its doing. An answer that the
    # budget is still being processed is not: the API server checks the budget first.
    unsure = False

    def still_pending(exc: BaseException) -> bool:
        return is_api_exception(exc) and budget_pending(exc) is not None

    async def send() -> Any:
        nonlocal unsure
        try:
            return await api.core.create_namespaced_pod_eviction(name, ns, body, **kwargs)
        except Exception as exc:
            unsure = unsure or is_transient(exc)
            raise

    what = f"Pod {ns}/{name}"

    def describe(exc: BaseException) -> str:
        said = budget_pending(exc) if is_api_exception(exc) else None
        if said is None:
            return describe_failure(exc)
        return (
            f"{said.strip().rstrip('.')} (its disruption controller has not caught up with "
            "the budget: is kube-controller-manager running it?)"
        )

    try:
        await call_with_retries(
            lambda: api.call(what, send, allow=(404, 409, 429, 500)),
            what=f"evicting pod {name} in namespace {ns}",
            attempts=pending.attempts,
            wait=pending.backoff(),
            transient=still_pending,
            describe=describe,
        )
    except TransientActionError as exc:
        if still_pending(exc.__cause__ or exc):
            exc.may_have_acted = unsure
        raise
    except Exception as exc:
        if not is_api_exception(exc):
            raise
        reason = budget_refusal(exc)
        if reason is not None:
            # On a retry too: an earlier try that evicted the pod leaves it gone or
            # terminating, which the API server evicts (deletes) again without a budget check.
            raise BudgetRefused(name, reason) from exc
        if exc.status == 409 and not _UID_CONFLICT.search(str(exc.body or "")):
            raise refusal(exc, what) from exc
        if exc.status in (429, 500):
            raise refusal(exc, what) from exc
        return "evicted" if unsure else "absent"
    return "evicted"


async def evict_pods(
    api: KubeApi,
    ns: str,
    pods: Sequence[tuple[str, str]],
    grace_period_seconds: int | None,
    *,
    taken_up: bool = False,
    pending: RetryPolicy = BUDGET_PENDING,
    progress: Evicted | None = None,
) -> Evicted:
    """Evict ``pods`` (name, uid) of namespace ``ns`` one after the other (``evict``).

    Stops at the first that fails. A budget's refusal raises EvictionRefused naming the
    budget's reason, the pods evicted before it and those not evicted (the refused one and the
    rest, not tried: the same budget would refuse them too, and the step evicts no other pods
    in their place), ``may_have_acted`` when some were evicted; any other refusal raises
    EvictionRefused with its own message, the same way. Any other failure raises as it came,
    ``may_have_acted`` also when some were evicted before it. ``taken_up``: the step's
    earlier attempt chose these pods and may have evicted those found gone, so they count
    as acted on too (EvictionRefused.evicted lists them). ``pending``: how long each
    eviction waits for a budget still being processed (``evict``). ``progress``: filled as
    the pods go (and returned), so a caller that catches a failure knows which went before
    it (``pod_holder.correct_stopped``).
    """
    done = progress if progress is not None else Evicted()
    for i, (name, uid) in enumerate(pods):
        try:
            outcome = await evict(api, ns, name, uid, grace_period_seconds, pending=pending)
        except ActionRefused as exc:
            left = [n for n, _ in pods[i:]]
            acted = done.now + (done.gone if taken_up else [])
            if not isinstance(exc, BudgetRefused):
                raise EvictionRefused(
                    exc.message,
                    evicted=acted,
                    not_evicted=left,
                    reason=exc.message,
                    may_have_acted=exc.may_have_acted or bool(acted),
                ) from exc
            evicted = ", ".join(done.now) or "none"
            gone = f"; already gone: {', '.join(done.gone)}" if done.gone else ""
            raise EvictionRefused(
                f"a PodDisruptionBudget refused evicting pod {name} in namespace {ns} "
                f"({exc.reason}); not evicted: {', '.join(left)}; evicted: {evicted}{gone}; "
                f"{exc.advice}",
                evicted=acted,
                not_evicted=left,
                reason=exc.reason,
                may_have_acted=bool(acted),
                advice=exc.advice,
            ) from exc
        except ActionError as exc:
            if exc.may_have_acted:
                done.unsure.append(name)
            exc.may_have_acted = exc.may_have_acted or bool(done.now)
            exc.may_have_acted = exc.may_have_acted or (taken_up and bool(done.gone))
            raise
        (done.now if outcome == "evicted" else done.gone).append(name)
    return done
