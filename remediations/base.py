"""The contract every remediation action fulfils, and the registry that finds them by name.

This module imports nothing from ``receiver``: actions depend only on this file and on the
client libraries of the system they touch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeGuard, runtime_checkable

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    # Only for annotations: Target lives in remediations.targets; import it from there.
    from remediations.targets import Target


class Risk(StrEnum):
    """An action's risk: ``high`` needs approval unless the rule says otherwise."""

    LOW = "low"
    HIGH = "high"


class Outcome(StrEnum):
    """How one action call ended."""

    OK = "ok"  # the change was made
    NOOP = "noop"  # live state already matched; nothing written
    DRY_RUN = "dry_run"  # validated (server-side where possible), nothing changed
    REFUSED = "refused"  # a precondition said no (paused, HPA-managed, stale revision, forbidden)
    FAILED = "failed"  # an error after retries
    # A notification that could not be delivered: recorded on the step, never fails the run.
    UNDELIVERED = "undelivered"
    # A rule test recorded the step as it would run, without calling the action (the
    # simulator's step runner; never an action's own outcome). Counts as a change made.
    SIMULATED = "simulated"
    # A worker stopped (crashed, lost its lease) while the step ran: it may have acted, or
    # not, and its effect is unknown. Never an action's own outcome: the step runner records
    # it for a step of an action that is not ``replay_safe`` when a run taken up again finds
    # the step started and not finished, and does not run it again (running it again could
    # go past its cap). It stops the run, which ends ``failed``.
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class Change:
    """What an action would do against live state, as ``preview()`` returns it.

    Shown for approval and bound into the approved step: the approval stores it with a hash
    of it, and an approved step runs only while a fresh preview still hashes the same (and
    with ``ActionContext.approved`` set to these ``preconditions``). So a preview must be
    deterministic for the same live state: no clock times, no random names. And it should bind
    what the approver decides on, not what moves on its own while they look (a queue's length,
    a session's age): such a value supersedes every approval before it can run.
    """

    summary: str
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    # Facts that must still hold when the change is executed (e.g. the current revision).
    preconditions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Result:
    """What ``run()`` did: the outcome, a message for humans, and the fields it changed.

    ``alert_fault``: a FAILED step failed on its alert's own values (a template in its params
    could not be rendered over them) before its action reached any system. The run fails all
    the same, but the rule's circuit breaker is not fed: the remediation was not what failed,
    and alerts with bad values must not switch the rule off for the others.

    ``may_have_acted``: a FAILED step whose failure came after its request may have reached
    its system (``ActionError.may_have_acted``): a POST sent and never answered, a signal whose
    answer was lost. Such a step counts as a possible change, as an ``interrupted`` one does
    (its run's on_resolved steps are planned). False for every other outcome."""

    outcome: Outcome
    message: str
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    alert_fault: bool = False
    may_have_acted: bool = False


class ActionError(Exception):
    """Base of the errors an action raises; ``message`` is meant for the operator.

    ``may_have_acted``: whether the action may have changed something before it failed (its
    request reached, or may have reached, its system: a POST sent and then timed out, a
    signalling statement whose answer was lost). None takes the class's ``ACTED_BY_DEFAULT``:
    True here, the conservative side (an action that cannot tell may have acted); False for
    the errors raised before anything is sent (a refusal, bad params, an unrenderable
    template). The step runner records a failed step that may have acted as a possible change
    (receiver/pipeline/steps.py)."""

    ACTED_BY_DEFAULT: ClassVar[bool] = True

    def __init__(self, message: str, *, may_have_acted: bool | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.may_have_acted = self.ACTED_BY_DEFAULT if may_have_acted is None else may_have_acted


class ActionRefused(ActionError):
    """A precondition refused the action; retrying will not help.

    Nothing was changed by default. ``may_have_acted=True`` when an earlier request of the same
    call may have acted before the refusal (a retried POST answered 4xx after a try that timed
    out, a statement refused part way): the step is then recorded failed, not refused."""

    ACTED_BY_DEFAULT: ClassVar[bool] = False


class MissingClient(ActionRefused):
    """The action needs a client that is not configured. ``name`` is the ``Clients`` key.

    A refusal, not a failure: nothing was attempted, and retrying will not help until the
    service is configured for that system.
    """

    def __init__(self, name: str) -> None:
        super().__init__(f"{_missing_what(name)} (client {name!r})")
        self.name = name


def _missing_what(name: str) -> str:
    system, _, connection = name.partition(":")
    if name == "kubernetes":
        return "no Kubernetes credentials are configured"
    if name == "http":
        return "no HTTP endpoints are configured"
    if name == "notify":
        return "no notification channels are configured"
    if system == "postgres" and connection:
        return f"no PostgreSQL connection named {connection!r} is configured"
    if system == "redis" and connection:
        return f"no Redis connection named {connection!r} is configured"
    return f"no client named {name!r} is configured"


class TransientActionError(ActionError):
    """Retries were exhausted on connection errors, 429 or 5xx. May have acted unless the
    raiser says otherwise (``may_have_acted=False``: only reads were tried, or no request was
    sent: ``remediations.retrying.call_with_retries``)."""


class ParamsError(ActionError):
    """The params given in a rule do not fit the action's params model (nothing was sent)."""

    ACTED_BY_DEFAULT: ClassVar[bool] = False

    def __init__(self, action: str, error: ValidationError | str) -> None:
        detail = error if isinstance(error, str) else _format_validation(error)
        super().__init__(f"invalid params for {action}: {detail}")
        self.action = action


def _format_validation(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "params"
        parts.append(f"{loc}: {item['msg']}")
    return "; ".join(parts)


class Clients:
    """The I/O clients handed to actions, by name. Read-only once built.

    Keys: ``"kubernetes"`` (a kubernetes_asyncio ApiClient), ``"postgres:<name>"``
    (``remediations.postgres.connection.PostgresConnection``) and ``"redis:<name>"``
    (``remediations.redis_queue.queues.RedisQueues``), one per configured connection, ``"http"``
    (``remediations.http.endpoints.HttpEndpoints``) and ``"notify"``
    (``remediations.notify.notifier.Notifier``).
    A system that is not
    configured has no key: ``Clients({"kubernetes": kube} if kube is not None else {})``.
    Each action says which keys it needs with ``Action.requires(target)``.
    """

    __slots__ = ("_clients",)

    def __init__(self, mapping: Mapping[str, Any] | None = None) -> None:
        clients = dict(mapping or {})
        for name, client in clients.items():
            if client is None:
                # A None client would pass has() and fail later, far from the mistake.
                raise ValueError(f"client {name!r} is None; leave out what is not configured")
        self._clients: Mapping[str, Any] = MappingProxyType(clients)

    def get(self, name: str) -> Any:
        """The client named ``name``. Raises MissingClient when it is not configured."""
        try:
            return self._clients[name]
        except KeyError:
            raise MissingClient(name) from None

    def has(self, name: str) -> bool:
        return name in self._clients

    def missing(self, names: Iterable[str]) -> list[str]:
        """The ``names`` that are not configured, sorted (``[]`` when all are)."""
        return sorted({name for name in names if name not in self._clients})

    def names(self) -> list[str]:
        """The configured client names, sorted (e.g. ``["kubernetes", "postgres:orders"]``)."""
        return sorted(self._clients)

    def __repr__(self) -> str:
        # Names only: a client's repr may carry a host or a credential.
        return f"Clients({self.names()})"


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """The alert a run answers, as actions that talk to people or services see it.

    Empty when the run was taken up again without its event (a resumed run); templates then
    render missing values as empty strings.
    """

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    status: str = ""  # "firing" or "resolved"
    starts_at: str = ""  # RFC 3339, as Alertmanager sent it
    generator_url: str = ""  # the Prometheus graph of the alert's expression


@dataclass(frozen=True, slots=True)
class ActionContext:
    """What one action call gets besides its target and params: the run, the mode, the clients."""

    run_id: str
    dry_run: bool
    clients: Clients
    # What earlier steps of the same run changed, keyed by action name:
    # {"before": {...}, "after": {...}} of the last step of that action whose outcome was ok
    # (e.g. the replica counts kubernetes.scale went from and to), so an on_resolved step can
    # undo exactly that change.
    recorded: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # The rule and the alert behind the run, for messages and request bodies (notify, http.call).
    rule: str = ""
    alert: AlertFacts = field(default_factory=AlertFacts)
    # Set when an engineer approved this step: the preconditions of the preview they approved.
    # run() refuses (ActionRefused) when the state it is about to change no longer meets them.
    approved: Mapping[str, Any] | None = None
    # Which step of the run this call is: its index in the rule and the phase it runs in
    # ("run", "resolve", "on_failed"). With run_id they name the step, so an action can tell
    # its own earlier write of the same step (a run taken up again after a crash between the
    # write and its record) from a new one. None: a call outside a run's steps (no replay
    # detection).
    step: int | None = None
    phase: str = "run"
    # True when a failure of this call that reached nothing (TransientActionError with
    # ``may_have_acted`` False) is not the step's end: the pipeline tries the step again once
    # its system is back (receiver.pipeline.unreachable), so what such a try leaves for the
    # next (delete_pod's write record, which the next try carries out) may stay. False (a call
    # outside a run's steps, or a step whose wait for its system is over): the failure is
    # final, and the action takes back what would otherwise claim a change never made.
    retried_if_unreached: bool = False


@runtime_checkable
class Action(Protocol):
    """One remediation. Implementations are stateless; all I/O goes through ``ctx.clients``.

    ``requires(target)`` names the ``Clients`` keys ``run()`` and ``preview()`` use for that
    target (e.g. ``frozenset({"kubernetes"})``), so a caller can tell before running whether
    the action's systems are configured. ``replay_safe`` says whether ``run()`` may be called
    again for a step that may already have acted (see the attribute).
    """

    name: ClassVar[str]  # registry key, e.g. "kubernetes.rollout_restart"
    Params: ClassVar[type[BaseModel]]
    risk: ClassVar[Risk]
    # Disruptive actions (restarts, deletes, rollbacks) draw on the global budget guard.
    disruptive: ClassVar[bool]
    # Whether ``run()`` may be called again blindly for the same step (same run, phase and
    # index) after a crash that may have come after it acted: True when a second call cannot
    # do more than the first did. The Kubernetes actions are (the write record each change
    # carries on the object: remediations/kubernetes/replay.py), and ``notify`` is by choice
    # (a duplicate message is better than a lost one). For the others (PostgreSQL signals, a
    # Redis requeue, an HTTP call) the step runner durably marks the step started before it
    # calls ``run()``; a run taken up again that finds the mark records the step
    # ``interrupted`` instead of acting a second time (receiver/pipeline/steps.py).
    replay_safe: ClassVar[bool]
    target_kinds: ClassVar[frozenset[str]]

    def requires(self, target: Target) -> frozenset[str]: ...

    def describe(self, target: Target, params: BaseModel) -> str: ...

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change: ...

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result: ...


class RendersTemplates(Protocol):
    """An action whose params hold templates over the alert (``http.call``'s body).

    ``render_check`` renders them as ``run`` would and raises the render's error
    (``remediations.template_work.TemplateFailed``) when one cannot be rendered over this
    alert. The pipeline asks every step of a run before the run's guards, so an alert whose
    values break a template takes no guard's slot and never leaves a run half done (a first
    step acted, the second unrenderable). A notification's template is not asked: a message
    that cannot be rendered is not sent, and its run goes on."""

    def render_check(self, ctx: ActionContext, target: Target, params: BaseModel) -> None: ...


def renders_templates(action: object) -> TypeGuard[RendersTemplates]:
    """True when ``action`` has a callable ``render_check`` (``RendersTemplates``). An attribute
    look-up, not ``isinstance`` against a runtime-checkable Protocol, which walks the Protocol's
    members on each call: asked for each step of every new run, it was 2 % of the worker's CPU
    in a storm (issue 12)."""
    return callable(getattr(action, "render_check", None))


class UnknownAction(KeyError):
    """No action is registered under ``name``; ``known`` lists the names there are."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown action {self.name!r}; known actions: {', '.join(self.known)}"


class Registry:
    """Actions by name. Built explicitly and passed in; there is no module-level instance."""

    def __init__(self, actions: list[Action] | None = None) -> None:
        self._actions: dict[str, Action] = {}
        for action in actions or []:
            self.register(action)

    def register(self, action: Action) -> None:
        if action.name in self._actions:
            raise ValueError(f"action {action.name!r} registered twice")
        self._actions[action.name] = action

    def get(self, name: str) -> Action:
        try:
            return self._actions[name]
        except KeyError:
            raise UnknownAction(name, sorted(self._actions)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._actions

    def __iter__(self) -> Iterator[Action]:
        return iter(self._actions.values())

    def names(self) -> list[str]:
        return sorted(self._actions)

    def parse_params(self, name: str, raw: Mapping[str, Any] | None) -> BaseModel:
        action = self.get(name)
        try:
            return action.Params.model_validate(dict(raw or {}))
        except ValidationError as exc:
            raise ParamsError(name, exc) from exc
