"""The kill switch's script calls, pure: KEYS and ARGV of ``lua/pause.lua`` and
``lua/resume.lua``, built here for both their callers.

``Guards.pause`` and ``resume`` (``redis_guards``: the rule tests' simulation, its clock
injected) call the scripts with the pause key alone, so nothing is queued; ``KillSwitch.pause``
and ``resume`` (``switch``: the routes) add the audit outbox and the record to queue in the same
step (``Queued``). One builder for both, so the two paths cannot come to disagree on what the
scripts read: the pause hash, its reason, its duration, the clock, who paused.
"""

from __future__ import annotations

from dataclasses import dataclass

from receiver.guards.policy import Arg, GuardKeys, to_ms

__all__ = ["Queued", "pause_call", "resume_call"]


@dataclass(frozen=True, slots=True)
class Queued:
    """The record a pause or resume queues in the audit outbox (``GuardKeys.audit_outbox``):
    its unique ``entry`` id, the outbox's ``cap`` (records; when it holds that many the move
    takes effect unqueued) and the record's ``data`` (JSON text)."""

    entry: str
    cap: int
    data: str


def pause_call(
    keys: GuardKeys,
    seconds: float | None,
    reason: str,
    *,
    by: str = "",
    now_ms: int | None = None,
    queued: Queued | None = None,
) -> tuple[list[str], list[Arg]]:
    """KEYS and ARGV for pause.lua: KEYS ``[pause]``, ARGV ``[reason, duration ms ('' until
    resumed), clock ms ('' for the server's TIME), by]``; with ``queued``, KEYS gain the outbox
    and ARGV ``[entry, cap, data]``. ``seconds``: positive, rounded up to whole ms (``to_ms``);
    ``now_ms``: a simulated clock (the rule tests')."""
    duration: Arg = "" if seconds is None else to_ms(seconds)
    args: list[Arg] = [reason, duration, "" if now_ms is None else now_ms, by]
    if queued is None:
        return [keys.pause()], args
    return [keys.pause(), keys.audit_outbox()], [*args, queued.entry, queued.cap, queued.data]


def resume_call(keys: GuardKeys, *, queued: Queued | None = None) -> tuple[list[str], list[Arg]]:
    """KEYS and ARGV for resume.lua: KEYS ``[pause]`` and no ARGV; with ``queued``, KEYS gain
    the outbox and ARGV are ``[entry, cap, data]``."""
    if queued is None:
        return [keys.pause()], []
    return [keys.pause(), keys.audit_outbox()], [queued.entry, queued.cap, queued.data]
