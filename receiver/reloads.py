"""Saying what a rules reload did: in the log and in the audit log, and which open runs a rule
removed (or renamed) leaves behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from receiver.rules.errors import RuleError, logged
from receiver.rules.loader import RuleHolder
from receiver.store import OpenRun
from receiver.telemetry import Metrics

__all__ = ["OpenRuns", "RuleReloads", "log_rule_warnings", "rules_data"]


def rules_data(holder: RuleHolder) -> dict[str, Any]:
    """The rules in force as the audit log records them: count, digest, names, warnings."""
    current = holder.current
    return {
        "count": len(current),
        "digest": current.digest,
        "names": sorted(rule.name for rule in current.rules),
        "warnings": [str(w) for w in current.warnings],
    }


def log_rule_warnings(log: Any, warnings: Sequence[RuleError]) -> None:
    """Log ``warnings`` (of the rules loaded at start-up or reloaded) on ``log``, a structlog
    logger: a "rule warning" line each, those that say the same of many rules (no notify
    channel configured) in one naming the rules (``errors.logged``)."""
    for fields in logged(warnings):
        log.warning("rule warning", **fields)


Audit = Callable[..., Awaitable[Any]]
# The open runs (not closed: their alert has not resolved) of the rules named, oldest first, at
# most ``limit`` of them (``Store.open_runs``).
OpenRuns = Callable[[Sequence[str]], Awaitable[Sequence[OpenRun]]]


class RuleReloads:
    """Says what a rules reload did: in the log, and in the audit log (``rules.reloaded``
    with the new set's digest and names, or ``rules.reload_failed`` with the errors and the
    digest of the set kept). Called from the watcher's thread or the SIGHUP handler; the audit
    row is written on ``loop``. ``drain`` waits for the rows still being written.

    A reload that removes a rule (or renames it: the old name is gone) while runs of it are open
    says so, naming the rule and those runs (``open_runs``), without holding the reload back:
    such a run still closes when its alert resolves, and undoes what it was planned with (its
    on_resolved steps are kept with it); one created before they were kept (``OpenRun.kept``
    false) is closed with nothing undone, and the warning says that too."""

    def __init__(
        self,
        rules: RuleHolder,
        log: Any,
        audit: Audit,
        loop: asyncio.AbstractEventLoop,
        open_runs: OpenRuns | None = None,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``metrics``: told of every reload (``remediator_rules_last_reload_successful``);
        ``clock``: Unix seconds; ``open_runs``: reads the open runs of removed rules (None:
        removals are not looked into)."""
        self._rules = rules
        self._log = log
        self._audit = audit
        self._loop = loop
        self._metrics = metrics
        self._clock = clock
        self._pending: set[concurrent.futures.Future[Any]] = set()
        # The audit rows are written one at a time, in the order of the reloads: each write is
        # a task of its own, and two concurrent appends may commit in either order, so the log
        # would show the older reload's errors as the last word. The lock's waiters are served
        # first in first out, and each task takes it on its first step, in submission order.
        self._in_order = asyncio.Lock()
        self._open_runs = open_runs
        # The names of the rules in force after the last good load: what a reload removed.
        self._names = frozenset(r.name for r in rules.current.rules)
        if metrics is not None:
            metrics.rules_reloaded(True, clock())  # the set loaded at start-up

    def __call__(self, errors: list[RuleError]) -> None:
        if self._metrics is not None:
            self._metrics.rules_reloaded(not errors, self._clock())
        if errors:
            for error in errors:
                self._log.error("rule reload failed; keeping the last good rules", error=str(error))
            kind = "rules.reload_failed"
            data = {"errors": [str(e) for e in errors], "kept": rules_data(self._rules)}
        else:
            current = self._rules.current
            self._log.info("rules reloaded", rules=len(current), digest=current.digest)
            log_rule_warnings(self._log, current.warnings)
            kind, data = "rules.reloaded", rules_data(self._rules)
            names = frozenset(r.name for r in current.rules)
            removed, self._names = sorted(self._names - names), names
            if removed and self._open_runs is not None:
                self._submit(self._warn_open(removed, self._open_runs))
        self._submit(self._write(kind, data))

    def _submit(self, work: Awaitable[None]) -> None:
        future = asyncio.run_coroutine_threadsafe(_awaited(work), self._loop)
        self._pending.add(future)
        future.add_done_callback(self._pending.discard)

    async def _warn_open(self, removed: Sequence[str], open_runs: OpenRuns) -> None:
        """Name the open runs of each removed rule in a warning (the store may be down: then
        the log says it could not tell)."""
        try:
            runs = await open_runs(removed)
        except Exception as exc:
            self._log.error(
                "rules removed; could not read their open runs", rules=removed, error=str(exc)
            )
            return
        for rule in removed:
            mine = [r for r in runs if r.rule == rule]
            if not mine:
                continue
            lost = [r.run_id for r in mine if not r.kept]
            self._log.warning(
                "rule removed or renamed while runs of it are open: they still close when their"
                " alert resolves and undo what they were planned with"
                + (
                    "; those created before that was kept are closed with nothing undone"
                    if lost
                    else ""
                ),
                rule=rule,
                open_runs=[r.run_id for r in mine],
                undo_lost=lost,
            )

    async def _write(self, kind: str, data: dict[str, Any]) -> None:
        try:
            async with self._in_order:
                await self._audit(kind, data=data)
        except Exception as exc:  # the store may be down: the reload stands, the log says so
            self._log.error("could not record the rules reload", kind=kind, error=str(exc))

    async def drain(self) -> None:
        for future in list(self._pending):
            await asyncio.wrap_future(future)


async def _awaited(work: Awaitable[None]) -> None:
    await work
