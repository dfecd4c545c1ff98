"""Counting earlier occurrences for ``when: {repeated: ...}``, and how much of the past that
takes. Pure.

The engine counts a rule's earlier occurrences on a target up to the rule's highest
``repeated.times`` (``Rule.most_times``) and no further: every step's decision is the same for
any count past it, so the history read takes, of each (rule, target) pair, only the newest runs
that can be counted (``recent_limit``) instead of every run of the window, which in a storm on
few targets grew with the storm. A count that reached the cap is said as "N or later".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from receiver.model import AlertEvent, NamespacePolicy, PriorRun, Status, Target
from receiver.rules.model import RuleSet
from receiver.templating import TargetError, TemplateError

__all__ = ["earlier_occurrences", "occurrence_text", "recent_limit", "repeat_keys"]


def repeat_keys(
    event: AlertEvent, rules: RuleSet, policy: NamespacePolicy
) -> list[tuple[str, Target]]:
    """The (rule, target) pairs whose recent runs ``engine.plan`` counts for ``event``: only
    those need reading from the store. Not "every run of this alertname": in a storm on one
    alert over many targets, that read would grow with the storm."""
    if event.status is not Status.FIRING:
        return []
    keys: list[tuple[str, Target]] = []
    for rule in rules.matching(event.labels):
        if rule.widest_window_s is None:
            continue  # no step waits for a repetition: its plan never looks at the past
        try:
            keys.append((rule.name, rule.render_target(event.labels, event.annotations, policy)))
        except (TargetError, TemplateError):
            continue  # planned as a skip; nothing to count
    return keys


def recent_limit(event: AlertEvent, rules: RuleSet) -> int:
    """How many of the newest earlier runs of each ``repeat_keys`` pair decide ``event``'s plan
    exactly: the highest ``repeated.times`` of the rules it matches (the engine counts no
    further, ``earlier_occurrences``), plus one for the run of the event's own occurrence,
    which the read may return and the engine does not count. 0 when no rule it matches
    counts (a resolved event reads no pair)."""
    if event.status is not Status.FIRING:
        return 0
    most = [r.most_times for r in rules.matching(event.labels) if r.most_times is not None]
    return max(most) + 1 if most else 0


def earlier_occurrences(
    runs: Iterable[PriorRun],
    rule: str,
    target: Target,
    event: AlertEvent,
    anchor: datetime,
    within_s: float,
    cap: int,
) -> int:
    """Distinct earlier occurrences of ``rule`` on ``target`` within ``within_s`` of ``anchor``,
    at most ``cap`` (the rule's ``most_times``): the same from the ``cap`` newest such runs as
    from all of them, which is what ``recent_limit`` has the store read."""
    # Inclusive at the edge: a run exactly `within` before the event still counts.
    since = anchor - timedelta(seconds=within_s)
    key = target.key
    earlier = {
        run.occurrence
        for run in runs
        if run.rule == rule
        and run.target.key == key
        and run.created_at >= since
        # Its own occurrence is never a repetition of itself (a retried event finds the run
        # its first attempt created), and a later event is not an earlier occurrence.
        and run.occurrence != event.occurrence
        and (run.event_id is None or run.event_id < event.id)
    }
    return min(len(earlier), cap)


def occurrence_text(count: int, cap: int | None) -> str:
    """``count`` (1 plus ``earlier_occurrences``) as the plan says it: "N or later" once the
    earlier ones reached ``cap``, where counting stopped."""
    if cap is not None and count > cap:
        return f"{count} or later"
    return str(count)
