"""What the job queue's tests share: short names for the two job kinds they enqueue."""

from __future__ import annotations

from receiver.store import JobKind

RESUME = JobKind.RESUME_RUN
DEADLINE = JobKind.VERIFY_DEADLINE
