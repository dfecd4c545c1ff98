"""Whether someone else changed a workload's replica count since a run's scale, when
remediator's own writes came in between.

A restore acts only while the live count is the one remediator last wrote
(``remediator.io/replicas``). That alone misses a change a later scale of another run wrote
over: run A scales 2 to 4, a human scales to 10, run B scales 10 to 12 and restores to 10;
the live count, 10, is the one remediator last wrote, and A's restore took the human's 10 to
8. So a scale write that finds the live count other than the stamp (someone else changed it
since remediator's last write) says so, in the same request, with the time it found it
(``CHANGED_AT``); a restore whose run scaled before that time leaves the count alone
(``changed_since``). The run whose scale found the change restores as before: its delta is
on top of the count it found.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from remediations.kubernetes.replay import now_rfc3339

__all__ = ["CHANGED_AT", "REPLICAS_ANNOTATION", "changed_since", "marks"]

# The replica count remediator last wrote, stamped beside the run id with every scale write.
REPLICAS_ANNOTATION = "remediator.io/replicas"
# When a scale write last found the live count other than REPLICAS_ANNOTATION (RFC 3339 UTC,
# to the microsecond, as write records' ``at``: they sort as text).
CHANGED_AT = "remediator.io/replicas-changed-at"


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def marks(read: Mapping[str, Any], current: int) -> dict[str, str]:
    """The annotations a scale write of ``read`` (whose live count is ``current``) adds for
    ``changed_since``: ``CHANGED_AT`` now when the count is not the one remediator last
    stamped; nothing otherwise (no stamp: nothing to compare with)."""
    stamp = _annotations(read).get(REPLICAS_ANNOTATION)
    if stamp is None or stamp == str(current):
        return {}
    return {CHANGED_AT: now_rfc3339()}


def changed_since(obj: Mapping[str, Any], scaled_at: str) -> str:
    """When a later scale write found ``obj``'s count changed by someone else, if that was
    after ``scaled_at`` (a run's scale record's ``at``); "" when none did."""
    found = _annotations(obj).get(CHANGED_AT) or ""
    return found if found > scaled_at else ""
