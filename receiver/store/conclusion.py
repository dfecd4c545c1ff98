"""What a verification move did to a run (``Verification.conclude_verification``,
``fail_recurred``), for the job or the pass that made it."""

from __future__ import annotations

from dataclasses import dataclass

from receiver.model import VerifyResult

__all__ = ["Conclusion"]


@dataclass(frozen=True, slots=True)
class Conclusion:
    """What a verification move did to a run of ``rule``: ``result`` when it ended (verified,
    resolved_before_action, not_resolved, recurred), else ``wait_s``: seconds until it can
    end (settling, or a job woken before the deadline). ``escalation``: the on_failed steps
    recorded."""

    rule: str
    result: VerifyResult | None = None
    wait_s: float | None = None
    escalation: int = 0
