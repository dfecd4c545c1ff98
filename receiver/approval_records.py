"""An approval of one step as stored, and where it stands: plain data (re-exported by
``receiver.model``, where the stages find it). No I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from remediations.targets import Target

__all__ = ["ApprovalRecord", "ApprovalState"]


class ApprovalState(StrEnum):
    """Where an approval of one step stands (``receiver.approvals.state`` has the rules).

    Only ``pending`` may be decided; every other state is final. ``superseded``: approved,
    but the target changed before the step ran, so a fresh approval was asked for."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    SUPERSEDED = "superseded"


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """One approval of one step, as stored. ``plan`` is what the approver is asked to allow
    (action, target, params and the preview with its preconditions), ``plan_hash`` the
    SHA-256 of its canonical JSON; ``context`` is what the page shows about why (the alert,
    its links), not part of the hash. The ``decided_*`` fields are set once it is decided
    (who, how: ``channel`` web|api|slack|cli, from where, with which link token).
    ``unreadable``: ``plan`` or ``context`` -> why it cannot be read (edited since it was
    written: ``receiver.store.stored_json``); that one is then ``{}``."""

    id: str
    run_id: str
    step_idx: int
    rule: str
    target: Target
    action: str
    risk: str
    plan: Mapping[str, Any]
    plan_hash: str
    context: Mapping[str, Any]
    requested_at: datetime
    expires_at: datetime
    state: ApprovalState
    decided_by: str | None = None
    decided_at: datetime | None = None
    channel: str | None = None
    source_ip: str | None = None
    user_agent: str | None = None
    token_id: str | None = None
    reason: str | None = None
    unreadable: Mapping[str, str] = field(default_factory=dict)
