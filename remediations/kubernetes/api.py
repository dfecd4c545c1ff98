"""The plumbing every Kubernetes action shares: the action base, with the API view and the
write plan (``kubeapi``) re-exported.

Every action reads live state in ``plan()`` and returns the exact change; ``preview()`` shows
it, ``run()`` recomputes the same plan and writes it. Writes carry ``fieldManager=remediator``,
an explicit patch Content-Type (kubernetes_asyncio otherwise guesses one from the body's Python
type), server-side ``dryRun=All`` in dry-run mode, and the run id as an annotation in the same
request. The mechanics mirror kubectl (see research/alertmanager-protocol.md §7).

Each write also carries the step's write record (``replay``): a step of a run taken up again
after a crash between its write and the database recording it finds its own record on the
object, does not write again, and reports what the earlier write did (``WritePlan.replayed``).
Only that step's own record counts: another step of the same run (on another container, or in
``on_failed`` after the same action ran) is its own change and is made.

A record goes into one of a few fixed slot keys, chosen from the object as read (``replay``):
so every write that carries one (in a run's steps, not in a dry run) is conditioned on the
``resourceVersion`` it read (``KubeApi.patch_read``), and one that meets a change in between
(409, ``WriteConflict``) is planned again from the object as it is then (``KubeAction.run``),
up to ``conflict_attempts`` times. kubectl's ``set``, ``rollout restart`` and ``rollout undo``
send no such precondition: they carry no record that another writer could overwrite.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from remediations.base import (
    ActionContext,
    ActionError,
    ActionRefused,
    Change,
    Outcome,
    ParamsError,
    Result,
    Risk,
)
from remediations.kubernetes.kubeapi import (
    ACTION_ANNOTATION,
    FIELD_MANAGER,
    JSON,
    JSON_PATCH,
    MERGE_PATCH,
    RUN_ID_ANNOTATION,
    STRATEGIC_MERGE,
    KubeApi,
    WriteConflict,
    WritePlan,
)
from remediations.kubernetes.objects import object_ref
from remediations.kubernetes.retry import DEFAULT_RETRY, RetryPolicy
from remediations.stored_text import without_nul
from remediations.targets import Target

__all__ = [
    "ACTION_ANNOTATION",
    "FIELD_MANAGER",
    "JSON",
    "JSON_PATCH",
    "MERGE_PATCH",
    "RUN_ID_ANNOTATION",
    "STRATEGIC_MERGE",
    "ActionParams",
    "KubeAction",
    "KubeApi",
    "WriteConflict",
    "WritePlan",
]


P = TypeVar("P", bound=BaseModel)


class ActionParams(BaseModel):
    """Base of every Kubernetes action's params model: unknown fields are errors (a typo in a
    rule must not be ignored), and params are immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _same(live: Mapping[str, Any], approved: Mapping[str, Any]) -> bool:
    # Compared as JSON: the approved side has been through the store's jsonb, which keeps
    # U+0000 as the text \x00 (an environment variable's value may hold it: without_nul).
    return json.dumps(without_nul(dict(live)), sort_keys=True, default=str) == json.dumps(
        dict(approved), sort_keys=True, default=str
    )


class KubeAction(Generic[P]):
    """The ``Action`` protocol for Kubernetes, given two methods.

    A subclass sets the class attributes and implements ``explain()`` (the ``describe()``
    text, from typed params) and ``plan()`` (read live state, return a WritePlan). ``preview()``
    and ``run()`` both call ``plan()``, so what runs is recomputed from the state at run time,
    never taken from an earlier preview. A ``plan()`` that writes an object first asks
    ``api.replayed(obj)`` (this step wrote it already, before a restart) and sends
    ``api.record(obj, change)`` in the same request as its change. Params of the wrong model
    raise ParamsError; a target
    of a kind outside ``target_kinds`` is refused (ActionRefused).
    """

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    risk: ClassVar[Risk]
    disruptive: ClassVar[bool]
    target_kinds: ClassVar[frozenset[str]]
    # A step taken up again after a crash finds its own write record on the object and
    # writes nothing more (remediations/kubernetes/replay.py): safe to call again.
    replay_safe: ClassVar[bool] = True

    def __init__(self, retry: RetryPolicy = DEFAULT_RETRY, *, conflict_attempts: int = 5) -> None:
        self.retry = retry
        # Writes that met a change since their read (WriteConflict) before run() gives up.
        self.conflict_attempts = conflict_attempts

    def requires(self, target: Target) -> frozenset[str]:
        """Every Kubernetes action needs the ``"kubernetes"`` client, whatever the target."""
        return frozenset({"kubernetes"})

    def describe(self, target: Target, params: BaseModel) -> str:
        return self.explain(target, self._params(params))

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change:
        plan = await self._checked_plan(ctx, target, params)
        return plan.change

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        """Plan from live state, then write. An error of the first plan has not acted (it only
        reads: ``may_have_acted`` False); one of the write keeps its own word (a write whose
        answers were all lost may have acted; one answered 4xx, 409 or 422 did not, unless an
        earlier request of it landed: the write reads back its record where it can). A write
        that meets a change since its read (WriteConflict) is planned again from live state,
        ``conflict_attempts`` times at most, then refused. Once a write may have acted (a 409
        on a retry whose earlier try got no answer), every later failure of this call says so
        too: only a re-plan that reads the object back (and finds this step's record, or
        live state already as wanted) tells otherwise, with a Result."""
        acted = False
        try:
            for attempt in range(self.conflict_attempts + 1):
                try:
                    plan = await self._checked_plan(ctx, target, params)
                except ActionError as exc:
                    # A plan only reads (a failed read says "may have acted" by default).
                    exc.may_have_acted = False
                    raise
                if plan.applied is not None:
                    # Checked before the approval: the approved change is the one already made.
                    return Result(
                        Outcome.OK, plan.noop_reason, before=plan.change.before, after=plan.applied
                    )
                self._admit(ctx, target, plan)
                if plan.write is None:
                    return Result(
                        Outcome.NOOP,
                        plan.noop_reason,
                        before=plan.change.before,
                        after=plan.change.before,
                    )
                if attempt == self.conflict_attempts:
                    break
                try:
                    return await self._write(ctx, plan, plan.write)
                except WriteConflict as exc:
                    # Another writer got in between (often the controller's status update):
                    # the slot of this step's record, and the change itself, are chosen afresh.
                    acted = acted or exc.may_have_acted
                    continue
        except ActionError as exc:
            # Sticky: a re-plan that fails (its read, a refusal) after a write that may have
            # landed has not shown that it did not; a write's own error keeps its own word.
            exc.may_have_acted = exc.may_have_acted or acted
            raise
        raise ActionRefused(
            f"{object_ref(target)} kept changing between read and write "
            f"({self.conflict_attempts} conflicts); not writing it"
            + ("; an earlier write may have landed: check it by hand" if acted else ""),
            may_have_acted=acted,
        )

    def _admit(self, ctx: ActionContext, target: Target, plan: WritePlan) -> None:
        if ctx.approved is not None and not _same(plan.change.preconditions, ctx.approved):
            # The plan is recomputed from live state here; an approval holds only for the
            # state it was given for (the write itself re-checks where it can, e.g. the
            # revision's JSON Patch `test`).
            raise ActionRefused(
                f"{object_ref(target)} changed since the step was approved: preconditions "
                f"{dict(plan.change.preconditions)} no longer match the approved "
                f"{dict(ctx.approved)}; not running it"
            )

    async def _write(
        self,
        ctx: ActionContext,
        plan: WritePlan,
        write: Callable[[], Awaitable[dict[str, Any]]],
    ) -> Result:
        written = await write()
        after = plan.observe(written)
        summary = plan.report(written) if plan.report is not None else plan.change.summary
        if ctx.dry_run:
            return Result(
                Outcome.DRY_RUN,
                f"dry run (validated by the API server, nothing changed): {summary}",
                before=plan.change.before,
                after=after,
            )
        return Result(Outcome.OK, summary, before=plan.change.before, after=after)

    async def _checked_plan(
        self, ctx: ActionContext, target: Target, params: BaseModel
    ) -> WritePlan:
        typed = self._params(params)
        if target.kind not in self.target_kinds:
            raise ActionRefused(
                f"{self.name} acts on {', '.join(sorted(self.target_kinds))}, not {target.kind}"
            )
        return await self.plan(KubeApi(ctx, self.retry, self.name), target, typed)

    def _params(self, params: BaseModel) -> P:
        if not isinstance(params, self.Params):
            raise ParamsError(self.name, f"expected {self.Params.__name__}, got {type(params)}")
        return params  # type: ignore[return-value]

    def explain(self, target: Target, params: P) -> str:
        """One line for humans: what the action would do to ``target``."""
        raise NotImplementedError

    async def plan(self, api: KubeApi, target: Target, params: P) -> WritePlan:
        """Read live state through ``api`` and return the exact write (or a NOOP plan).

        Raises ActionRefused when a precondition says no, TransientActionError when the API
        server stays unreachable.
        """
        raise NotImplementedError
