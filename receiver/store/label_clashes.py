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

Found after the insert, by a statement of its own (``CLASH_SQL``) run only for a batch that had
duplicates: the intake statement stays as it was, so a notification of new alerts (the storm
intake is sized for) pays nothing for this. A notification Alertmanager re-sends each
``group_interval`` is all duplicates: one more statement, one row and one index probe a
duplicate. That read failing is logged and intake answers as it would have: the alerts are
stored already (``ClashReport.check``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from receiver.log_limits import Throttle
from receiver.store.event_rows import event_json
from receiver.store.records import NewEvent

__all__ = ["CLASH_SQL", "LOG_EVERY_S", "ClashReport", "LabelClash", "label_clashes"]

# At most one warning per this many seconds (seconds); the ones held back are counted in it.
LOG_EVERY_S = 10.0
# What the warning shows of the sender's text: label names and key fields, cut.
_NAMES = 10
_CHARS = 64

# The duplicates whose labels differ from the stored copy of their key: $1 a JSON array, one
# [fingerprint, startsAt, status, labels] a duplicate (one document, encoded in one call and
# parsed once, as the insert's own); rows (i: the duplicate's 1-based position, stored: the
# stored copy's labels as JSON text), only for those that differ. The copy compared is the one
# with the highest refire: one probe of alert_events_dedupe read backward, whatever the alert's
# history. For a firing duplicate that is the row it conflicted with (the insert keys a firing
# on the latest occurrence); for a resolved one too, but for a late copy of an earlier
# occurrence's resolution (its endsAt stored under an older refire). Every copy of one alert
# has the same labels (Alertmanager's fingerprint is their hash), so the latest differs from
# the one conflicted with only where a clash was stored already; reading every copy instead
# would cost a row an occurrence, and a flapping alert has many. Run after the insert, it also
# sees the copy the batch itself stored: a duplicate within one batch is compared with the
# first copy, the one counted accepted. jsonb's equality: key order and spacing do not count.
CLASH_SQL = """SELECT d.i, x.labels::text AS stored
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS d(j, i)
    CROSS JOIN LATERAL (
        SELECT labels FROM alert_events
        WHERE fingerprint = d.j->>0 AND starts_at = d.j->>1 AND status = d.j->>2
        ORDER BY refire DESC LIMIT 1) AS x
    WHERE x.labels <> d.j->3"""


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


async def label_clashes(
    conn: Any, duplicates: Sequence[Sequence[NewEvent]]
) -> list[list[LabelClash]]:
    """The clashes of each notification, in order: ``duplicates`` holds the events of each
    that the insert dropped as duplicates (``EventQueue.insert_event_groups``), each compared
    with the stored copy of its key (``CLASH_SQL``; the first copy of the batch when the batch
    stored it). One statement on ``conn`` (asyncpg's), one row a duplicate whose labels differ;
    asyncpg's errors pass through."""
    flat = [(n, event) for n, group in enumerate(duplicates) for event in group]
    found: list[list[LabelClash]] = [[] for _ in duplicates]
    if not flat:
        return found
    rows = await conn.fetch(
        CLASH_SQL,
        event_json(
            [
                (event.fingerprint, event.starts_at, str(event.status), event.labels)
                for _, event in flat
            ]
        ),
    )
    for row in sorted(rows, key=lambda r: int(r["i"])):
        n, event = flat[int(row["i"]) - 1]
        if names := _differing(json.loads(row["stored"]), event.labels):
            found[n].append(LabelClash(event.key, names))
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
        # The read failing has its own line: it says nothing of a clash, and must not hold
        # back the next one that does.
        self._failed = Throttle(LOG_EVERY_S)
        self._log: Any = log if log is not None else structlog.get_logger("remediator.intake")

    async def check(self, conn: Any, duplicates: Sequence[Sequence[NewEvent]]) -> None:
        """Compare each notification's ``duplicates`` with the stored copies on ``conn``
        (``label_clashes``) and report what differs. Never raises but on cancellation: the
        alerts are stored already, so a failed read (PostgreSQL going away, intake's deadline
        closing ``conn``) is logged, at most once per ``LOG_EVERY_S``, with the error's class and
        SQLSTATE only (PostgreSQL's message may quote the labels sent), and intake answers as
        it would have."""
        try:
            found = await label_clashes(conn, duplicates)
        except Exception as exc:
            held_back = self._failed.ready()
            if held_back is not None:
                self._log.warning(
                    "could not compare duplicates' labels with the stored copies; the alerts "
                    "are stored, any clash among them is neither counted nor logged",
                    error=type(exc).__name__,
                    sqlstate=getattr(exc, "sqlstate", None),
                    not_logged_since_last=held_back,
                )
            return
        for clashes in found:
            self(clashes)

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
