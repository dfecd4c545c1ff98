"""Refusal digests: what is said of the refusals folded into a window, and to whom. Pure.

In a storm most runs are refused (rate, cooldown, the breaker...), and a rule that announces
its refusals would send one message each (issue 12's storm: thousands). Instead, for each
(rule, channel), the first refusal is announced at once and opens a window; the refusals that
follow within it are folded (each still audited on its run, as not sent on its own), and when
the window ends one digest says how many there were, by guard, on how many targets. The
windows live in Redis (``receiver.guards.digest_windows``); this module holds their shapes,
and the words and links of the audit rows and of the digest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

__all__ = [
    "DIGEST_EVENT",
    "MAX_EXAMPLES",
    "REFUSAL_DIGEST_BOUNDS",
    "REFUSAL_DIGEST_S",
    "Digest",
    "Folding",
    "by_guard_text",
    "digest_audit",
    "digest_text",
    "digest_title",
    "folded_detail",
    "parse_digest",
    "runs_link",
    "window_id",
]

# The window of a digest by default (``announcements.refusal_digest``): five minutes. At least
# a second (a shorter one folds nothing) and at most a day (a digest later than that tells
# on-call nothing); off (0) sends every refusal on its own.
REFUSAL_DIGEST_S = 300.0
REFUSAL_DIGEST_BOUNDS = (1.0, 86400.0)
# A digest's moment in the metrics (``remediator_announcements_total{event="refused_digest"}``)
# and in the messages (``remediations.notify.message.Event.REFUSED_DIGEST``).
DIGEST_EVENT = "refused_digest"
# How many targets a digest names as examples.
MAX_EXAMPLES = 3
# An example target is cut to this many characters (a target's name has no length limit).
EXAMPLE_CHARS = 200


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_ms(value: int | str) -> datetime:
    """An aware UTC datetime from milliseconds since the epoch (text or a number)."""
    return datetime.fromtimestamp(int(value) / 1000, UTC)


def window_id(rule: str, channel: str, start: datetime) -> str:
    """The name of one window: ``rule:channel:start`` (ms since the epoch), the same in the
    folded runs' audit rows, the digest's audit row and the digest itself."""
    return f"{rule}:{channel}:{round(start.timestamp() * 1000)}"


@dataclass(frozen=True, slots=True)
class Folding:
    """Redis' answer for one refusal: ``folded`` into the window of its rule and channel that
    runs from ``start`` to ``end`` (aware datetimes), or not (False: it is to be sent on its
    own, and opened that window)."""

    folded: bool
    start: datetime
    end: datetime


def folded_detail(rule: str, channel: str, start: datetime, end: datetime) -> str:
    """The ``detail`` of a folded refusal's ``run.announced`` row."""
    return (
        f"folded into the refusal digest of {rule} to {channel} for the window "
        f"{_iso(start)} to {_iso(end)} (window {window_id(rule, channel, start)}): not sent on "
        "its own; the digest is sent when the window ends"
    )


@dataclass(frozen=True, slots=True)
class Digest:
    """The refusals folded into one ended window. ``refused``: runs folded (the one sent on its
    own, ``opener``, is not among them); ``by_guard``: guard name -> runs; ``targets``:
    distinct targets among them, ``examples`` the first few (at most ``MAX_EXAMPLES``)."""

    rule: str
    channel: str
    start: datetime
    end: datetime
    refused: int
    by_guard: Mapping[str, int] = field(default_factory=dict)
    targets: int = 0
    examples: tuple[str, ...] = ()
    opener: str = ""

    @property
    def id(self) -> str:
        return window_id(self.rule, self.channel, self.start)


def parse_digest(entry: str | bytes) -> Digest:
    """A digest as ``lua/digest.lua`` writes it (JSON). Raises ValueError for anything else."""
    try:
        data = json.loads(entry)
        # cjson writes an empty list as an object.
        examples = data.get("examples") or []
        return Digest(
            rule=str(data["rule"]),
            channel=str(data["channel"]),
            start=from_ms(data["start"]),
            end=from_ms(data["end"]),
            refused=int(data["refused"]),
            by_guard={str(k): int(v) for k, v in (data.get("by_guard") or {}).items()},
            targets=int(data.get("targets") or 0),
            examples=tuple(str(x) for x in examples),
            opener=str(data.get("opener") or ""),
        )
    except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a refusal digest: {exc}") from exc


def by_guard_text(by_guard: Mapping[str, int]) -> str:
    """``rate 300, cooldown 40``: most first, then by name."""
    ordered = sorted(by_guard.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{guard} {count}" for guard, count in ordered)


def digest_title(digest: Digest) -> str:
    """One line: the rule and how many more refusals."""
    times = "time" if digest.refused == 1 else "times"
    return f"Remediation refused {digest.refused} more {times}: {digest.rule}"


def digest_text(digest: Digest) -> str:
    """What the digest says: the window, the count by guard, the targets with examples."""
    targets = "target" if digest.targets == 1 else "targets"
    examples = ", ".join(digest.examples)
    more = digest.targets - len(digest.examples)
    if examples and more > 0:
        examples += f" and {more} more"
    runs = "1 more run" if digest.refused == 1 else f"{digest.refused} more runs"
    were = "was" if digest.refused == 1 else "were"
    lines = [
        f"From {_iso(digest.start)} to {_iso(digest.end)}, {runs} of {digest.rule} {were} "
        f"refused after the one announced: {by_guard_text(digest.by_guard)}.",
        f"{digest.targets} {targets}" + (f": {examples}." if examples else "."),
    ]
    return "\n".join(lines)


def runs_link(external_url: str, digest: Digest) -> str:
    """The runs API listing the rule's refused runs from the window's start, or ``""``
    without an external URL (``receiver.http.filters.run_filters`` reads the query)."""
    if not external_url:
        return ""
    query = urlencode({"rule": digest.rule, "outcome": "refused", "since": _iso(digest.start)})
    return f"{external_url.rstrip('/')}/api/v1/runs?{query}"


def digest_audit(digest: Digest, *, delivered: bool, detail: str) -> dict[str, Any]:
    """The data of the digest's audit row (``receiver.store.DIGEST_AUDIT``)."""
    return {
        "window": digest.id,
        "rule": digest.rule,
        "channel": digest.channel,
        "start": _iso(digest.start),
        "end": _iso(digest.end),
        "refused": digest.refused,
        "by_guard": dict(digest.by_guard),
        "targets": digest.targets,
        "examples": list(digest.examples),
        "opener": digest.opener,
        "delivered": delivered,
        "detail": detail,
    }
