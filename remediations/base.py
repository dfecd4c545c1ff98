"""The contract every remediation action fulfils, and the registry that finds them by name.

This module imports nothing from ``receiver``: actions depend only on this file and on the
client libraries of the system they touch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    # Only for annotations: Target lives in remediations.targets; import it from there.
    from remediations.targets import Target


class Risk(StrEnum):
    LOW = "low"
    HIGH = "high"


class Outcome(StrEnum):
    OK = "ok"  # the change was made
    NOOP = "noop"  # live state already matched; nothing written
    DRY_RUN = "dry_run"  # validated (server-side where possible), nothing changed
    REFUSED = "refused"  # a precondition said no (paused, HPA-managed, stale revision, forbidden)
    FAILED = "failed"  # an error after retries


@dataclass(frozen=True, slots=True)
class Change:
    """What an action would do against live state: shown in dry-run and bound into approvals."""

    summary: str
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)
    # Facts that must still hold when the change is executed (e.g. the current revision).
    preconditions: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    message: str
    before: Mapping[str, Any] = field(default_factory=dict)
    after: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Clients:
    """I/O clients handed to actions. ``kube`` is a kubernetes_asyncio ApiClient, or None when
    no cluster credentials exist (the service then runs in dry-run and never calls run())."""

    kube: Any | None = None


@dataclass(frozen=True, slots=True)
class ActionContext:
    run_id: str
    dry_run: bool
    clients: Clients
    # What earlier steps of the same run recorded, keyed by action name, e.g. the replica count
    # that kubernetes.scale started from, so an on_resolved step can restore it.
    recorded: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


class ActionError(Exception):
    """Base of the errors an action raises; ``message`` is meant for the operator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ActionRefused(ActionError):
    """A precondition refused the action; retrying will not help."""


class TransientActionError(ActionError):
    """Retries were exhausted on connection errors, 429 or 5xx."""


class ParamsError(ActionError):
    """The params given in a rule do not fit the action's params model."""

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


@runtime_checkable
class Action(Protocol):
    """One remediation. Implementations are stateless; all I/O goes through ``ctx.clients``."""

    name: ClassVar[str]  # registry key, e.g. "kubernetes.rollout_restart"
    Params: ClassVar[type[BaseModel]]
    risk: ClassVar[Risk]
    # Disruptive actions (restarts, deletes, rollbacks) draw on the global budget guard.
    disruptive: ClassVar[bool]
    target_kinds: ClassVar[frozenset[str]]

    def describe(self, target: Target, params: BaseModel) -> str: ...

    async def preview(self, ctx: ActionContext, target: Target, params: BaseModel) -> Change: ...

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result: ...


class UnknownAction(KeyError):
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
