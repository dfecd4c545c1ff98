"""The PostgreSQL store: the durable event queue, the job queue, runs and steps, the audit chain.

``Store`` is one class composed of a mixin per aggregate, each over the same asyncpg pool
(database.py): events.py (the intake queue), jobs.py (work that resumes a run), leases.py (the
lease statements both queues share), failures.py (failed attempts, bounded, then dead letters),
fence.py (the writes a worker makes under a claim, refused once it lost the lease),
queues.py (what operators see and do with both queues), history.py (what the engine reads;
its SQL in history_sql.py), runs.py (runs), steps.py (their steps), admissions.py (their
admissions and refusals),
verification.py (how a verification ends), audit.py (the hash-chained audit log),
approvals.py (approvals of risky steps), step_ends.py (the one way a run's steps that will not
run are ended, with their approvals), resolved_runs.py (a run whose alert resolved before
its steps left ran), announcements.py (what the run announcements did),
review.py (what the post-incident review reads), signouts.py (review sessions signed
out), statistics.py (the planner's statistics kept
in step with a storm).
Both queues wake the workers on the one ``WORK_CHANNEL``. Callers import everything from here::

    from receiver.store import Store, StoreUnavailable, RunRecord

Connection-level failures surface as ``StoreUnavailable`` (errors.py); every other database
error is a bug and propagates unchanged. Schema changes are numbered files in migrations/,
applied by migrate.py when the store connects.
"""

from __future__ import annotations

from receiver.store.admissions import Admissions, RecordedRefusal
from receiver.store.announcements import DIGEST_AUDIT, Announcements, announced_data
from receiver.store.approvals import Approvals
from receiver.store.audit import AuditLog, OnceEntry
from receiver.store.bounded import HeldConnection
from receiver.store.canonical import canonical_json
from receiver.store.claims import MAX_HINTED_LANES, next_lane
from receiver.store.database import WORK_CHANNEL
from receiver.store.deferrals import DEFERRED_AUDIT, StepDeferrals
from receiver.store.errors import (
    STATEMENT_MODE_FIX,
    StoreUnavailable,
    describe,
    is_unavailable,
    statement_pooled,
)
from receiver.store.escalation_ends import OVERTAKEN_AUDIT, EscalationEnds, Overtaken
from receiver.store.events import CLAIM_WINDOW, EventQueue
from receiver.store.failures import Failures
from receiver.store.fence import LeaseFence, LeaseLost
from receiver.store.finish import (
    FINISH_HELD_BY_RUN,
    FINISH_NOTICE,
    FINISH_REFUND,
    FINISH_RELEASE,
)
from receiver.store.history import EngineHistory, OpenRun
from receiver.store.job_ends import JobEnd
from receiver.store.jobs import JobQueue
from receiver.store.label_clashes import ClashReport, LabelClash
from receiver.store.leases import EventLease
from receiver.store.paging import BadCursor, decode_cursor
from receiver.store.phase_stop import PhaseStops
from receiver.store.pool_capacity import PoolTooSmall
from receiver.store.pooler_probe import PoolerNotNamed
from receiver.store.queues import (
    QUEUE_STATES,
    ItemConflict,
    ItemNotFound,
    Queues,
)
from receiver.store.records import (
    AuditCheck,
    ClaimedEvent,
    ClaimedJob,
    JobKind,
    NewEvent,
    Refused,
    RunRecord,
    StepRecord,
    run_id_of,
)
from receiver.store.resolved_runs import ResolvedEnd, ResolvedRuns
from receiver.store.review import ReviewReads
from receiver.store.runs import Runs
from receiver.store.session_name import store_session_settings
from receiver.store.signouts import SignOuts
from receiver.store.statistics import Statistics
from receiver.store.steps import STARTED, StepStart, StepWriter, admitted_data
from receiver.store.upkeep import keep_pruning, keep_statistics
from receiver.store.verification import Conclusion, Verification
from receiver.store.withdrawal import WITHDRAWN, Withdrawals

__all__ = [
    "CLAIM_WINDOW",
    "DEFERRED_AUDIT",
    "DIGEST_AUDIT",
    "FINISH_HELD_BY_RUN",
    "FINISH_NOTICE",
    "FINISH_REFUND",
    "FINISH_RELEASE",
    "MAX_HINTED_LANES",
    "OVERTAKEN_AUDIT",
    "QUEUE_STATES",
    "STARTED",
    "STATEMENT_MODE_FIX",
    "WITHDRAWN",
    "WORK_CHANNEL",
    "AuditCheck",
    "BadCursor",
    "ClaimedEvent",
    "ClaimedJob",
    "ClashReport",
    "Conclusion",
    "EventLease",
    "HeldConnection",
    "ItemConflict",
    "ItemNotFound",
    "JobEnd",
    "JobKind",
    "LabelClash",
    "LeaseFence",
    "LeaseLost",
    "NewEvent",
    "OnceEntry",
    "OpenRun",
    "Overtaken",
    "PoolTooSmall",
    "PoolerNotNamed",
    "RecordedRefusal",
    "Refused",
    "ResolvedEnd",
    "RunRecord",
    "StepRecord",
    "StepStart",
    "Store",
    "StoreUnavailable",
    "admitted_data",
    "announced_data",
    "canonical_json",
    "decode_cursor",
    "describe",
    "is_unavailable",
    "keep_pruning",
    "keep_statistics",
    "next_lane",
    "run_id_of",
    "statement_pooled",
    "store_session_settings",
]


class Store(
    EventQueue,
    JobQueue,
    Failures,
    Queues,
    EngineHistory,
    Runs,
    StepWriter,
    StepDeferrals,
    Admissions,
    Verification,
    Withdrawals,
    PhaseStops,
    AuditLog,
    Approvals,
    ResolvedRuns,
    EscalationEnds,
    Announcements,
    ReviewReads,
    SignOuts,
    Statistics,
):
    """The repository over an asyncpg pool. Create with ``await Store.connect(dsn)``."""

    async def prune(self, older_than_s: float) -> dict[str, int]:
        """Retention, everything it covers: finished alert events and finished jobs older than
        ``older_than_s`` seconds; {"events": n, "jobs": m}. Runs, steps, approvals and audit
        rows are the record and are never pruned."""
        return {
            "events": await self.prune_events(older_than_s),
            "jobs": await self.prune_jobs(older_than_s),
        }
