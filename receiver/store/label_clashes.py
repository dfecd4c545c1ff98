"""Alerts dropped as duplicates although their labels differ from the copy kept.

Events dedupe on (fingerprint, startsAt, status, refire) (``store.events``): that key is what
makes a retried, re-sent or HA peer's copy of a notification harmless, and it stays. Alertmanager's
fingerprint is a hash of the alert's labels, so two alerts with one key and different labels
come only from another sender that computes fingerprints its own way, or from a forged payload.
The copy stored first is kept and the other is dropped, as before; the drop is no longer
silent: counted (``ClashReport``'s ``count``: ``remediator_alert_label_clashes_total``) and
logged, one warning per notification, at most one per ``LOG_EVERY_S`` seconds with how many
were held back, naming the alert's key and the label *names* that differ, never their values
(a forged payload's text, or a secret sent as a label, does not reach the log).

Found two ways, both within the insert: a copy stored before the statement, read by
``CLASH_SELECT`` inside it (no round trip of its own), and two copies in one batch, compared
here (only when the batch had duplicates).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from receiver.log_limits import Throttle
from receiver.store.records import NewEvent

__all__ = ["CLASH_SELECT", "LOG_EVERY_S", "ClashReport", "LabelClash", "label_clashes"]

# At most one warning per this many seconds (seconds); the ones held back are counted in it.
LOG_EVERY_S = 10.0
# What the warning shows of the sender's text: label names and key fields, cut.
_NAMES = 10
_CHARS = 64

# The stored events of the statement's input (``keyed``: the insert's own CTE, with the refire
# ``k`` the insert keys on) whose labels differ from the input's: rows shaped as the insert's
# (fingerprint, starts_at, status, woken), ``clash`` holding the stored labels (NULL in the
# insert's own rows). One index probe of the dedupe key per event.
CLASH_SELECT = """SELECT x.fingerprint, x.starts_at, x.status, 0::bigint AS woken,
           x.labels::text AS clash
    FROM keyed JOIN alert_events x
      ON x.fingerprint = keyed.f AND x.starts_at = keyed.s AND x.status = keyed.st
     AND x.refire = keyed.k
    WHERE x.labels <> keyed.l"""


@dataclass(frozen=True, slots=True)
class LabelClash:
    """One alert dropped as a duplicate whose labels differ from the copy kept: its dedupe
    ``key`` (fingerprint, startsAt, status) and the ``names`` of the labels that differ (in
    one copy only, or with another value), sorted."""

    key: tuple[str, str, str]
    names: tuple[str, ...]


def _differing(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[str, ...]:
    names = set(a) ^ set(b)
    names.update(k for k in a.keys() & b.keys() if a[k] != b[k])
    return tuple(sorted(names))


def label_clashes(
    groups: Sequence[Sequence[NewEvent]], stored: Iterable[Mapping[str, Any]]
) -> list[list[LabelClash]]:
    """The clashes of each notification of ``groups``, in order. ``stored``: the ``CLASH_SELECT``
    rows of the insert (the labels stored under a key some input differs from). An event is
    compared with the copy stored before, else with the first copy of its key in the batch
    (the one counted accepted, ``EventQueue.insert_event_groups``)."""
    kept: dict[tuple[str, str, str], Mapping[str, Any]] = {
        (r["fingerprint"], r["starts_at"], r["status"]): json.loads(r["clash"]) for r in stored
    }
    found: list[list[LabelClash]] = []
    for group in groups:
        clashes: list[LabelClash] = []
        for event in group:
            first = kept.setdefault(event.key, event.labels)
            if first is not event.labels and (names := _differing(first, event.labels)):
                clashes.append(LabelClash(event.key, names))
        found.append(clashes)
    return found


def _cut(text: str) -> str:
    return text if len(text) <= _CHARS else text[: _CHARS - 1] + "…"


class ClashReport:
    """``report(clashes)`` for one notification's ``LabelClash`` list: counted through
    ``count`` (the number of alerts; None: not counted, as in a store without the service's
    metrics) and logged once (``LOG_EVERY_S``). Nothing when the list is empty."""

    def __init__(
        self,
        count: Callable[[int], None] | None = None,
        *,
        throttle: Throttle | None = None,
        log: Any = None,
    ) -> None:
        self._count = count
        self._throttle = throttle if throttle is not None else Throttle(LOG_EVERY_S)
        self._log: Any = log if log is not None else structlog.get_logger("remediator.intake")

    def __call__(self, clashes: Sequence[LabelClash]) -> None:
        if not clashes:
            return
        if self._count is not None:
            self._count(len(clashes))
        held_back = self._throttle.ready()
        if held_back is None:
            return
        fingerprint, starts_at, status = clashes[0].key
        names = clashes[0].names
        self._log.warning(
            "alerts dropped as duplicates although their labels differ from the stored copy "
            "(same fingerprint and startsAt: another sender, or a forged payload); the copy "
            "stored first is kept",
            alerts=len(clashes),
            fingerprint=_cut(fingerprint),
            starts_at=_cut(starts_at),
            status=status,
            differing_labels=[_cut(n) for n in names[:_NAMES]],
            more_labels=max(0, len(names) - _NAMES),
            not_logged_since_last=held_back,
        )
