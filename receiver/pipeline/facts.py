"""Reading the live facts a plan depends on, before ``engine.plan`` is called.

``engine.fact_needs`` says which facts (kind, target) the matching rules' conditions read;
``FactReader`` runs one read-only probe per need (``remediations``) and hands the readings to
the engine as plain data (a rule test states them instead: ``Deps.fixtures``). A probe that
fails (no cluster configured, the target missing, the API server unreachable) yields a reading
with the reason: the engine leaves the conditional step out and records why. Nothing is guessed
and nothing is retried here: an event whose facts cannot be read is planned without the steps
that need them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from receiver.facts import FactKind, FactReading, Facts, Rollout
from receiver.pipeline.context import Deps
from remediations.base import ActionError, Clients
from remediations.kubernetes.probe import newest_rollout
from remediations.targets import Target

__all__ = ["PROBES", "FactReader", "Probe"]

# A probe: (clients, target) -> the fact's value, raising ActionError when it cannot be read.
Probe = Callable[[Clients, Target], Awaitable[Any]]


async def _rollout(clients: Clients, target: Target) -> Rollout:
    state = await newest_rollout(clients, target)
    return Rollout(
        state.revision,
        state.replicaset,
        state.created_at,
        known=state.known,
        bounded=state.bounded,
        rollback_to=state.rollback_to,
        no_rollback=state.no_rollback,
        returns_to=state.returns_to,
    )


PROBES: Mapping[FactKind, Probe] = {FactKind.ROLLOUT: _rollout}


class FactReader:
    """``await reader(needs) -> Facts``: every need read once, failures as reasons."""

    def __init__(self, deps: Deps, probes: Mapping[FactKind, Probe] = PROBES) -> None:
        self._deps = deps
        self._probes = probes

    async def __call__(self, needs: Sequence[tuple[FactKind, Target]], log: Any) -> Facts:
        readings: list[FactReading] = []
        for kind, target in needs:
            readings.append(await self._read(kind, target, log))
        return Facts.of(*readings)

    async def _read(self, kind: FactKind, target: Target, log: Any) -> FactReading:
        deps = self._deps
        probe = self._probes.get(kind)
        error: str | None = None
        value: Any = None
        if probe is None and deps.fixtures is None:
            error = f"no probe reads {kind} facts"
        else:
            try:
                value = await self._value(kind, target, probe)
            except ActionError as exc:
                error = exc.message
            except Exception as exc:  # a probe's bug must not stop the event: say so instead
                log.exception("fact probe crashed", fact=str(kind), target=target.key)
                error = f"{type(exc).__name__}: {exc}"
        read_at = deps.clock()
        if error is not None:
            log.info("fact not read", fact=str(kind), target=target.key, error=error)
            return FactReading(kind, target, error=error, read_at=read_at)
        return FactReading(kind, target, value=value, read_at=read_at)

    async def _value(self, kind: FactKind, target: Target, probe: Probe | None) -> Any:
        """The probe's reading, or in a simulation the test's fixture (never a probe: there is
        nothing live to read). Raises ActionError when it cannot be had."""
        fixtures = self._deps.fixtures
        if fixtures is not None:
            value = await fixtures.get(str(kind), target)
            if value is None:
                raise ActionError(f"the test states no {kind} fact of {target.key}")
            return value
        assert probe is not None
        return await probe(self._deps.clients, target)
