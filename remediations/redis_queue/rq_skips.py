"""The words for the failed RQ jobs a requeue leaves in the registry, and why each is left
(``lua/requeue_rq.lua`` and ``lua/count_rq.lua`` tell them apart the same way)."""

from __future__ import annotations

from remediations.redis_queue.queues import QueueSpec

__all__ = ["skipped_detail"]


def skipped_detail(gone: int, elsewhere: int, limited: int, spec: QueueSpec, *, dry: bool) -> str:
    """``"; ..."`` naming the ids skipped for each reason, or ``""`` when none was: ``gone``
    (no job hash under ``spec.job_key_prefix``), ``elsewhere`` (the job's ``origin`` is not
    ``spec.rq_queue``), ``limited`` (a rate-limited job, RQ 3). ``dry``: words for a dry run,
    which moves and skips nothing."""
    verb = "would be skipped" if dry else "skipped"
    left = "" if dry else "; left in the registry"
    parts: list[str] = []
    if gone:
        parts.append(
            f"{gone} failed id(s) {verb}: not expired, but no job hash under "
            f"{spec.job_key_prefix!r}"
            + (
                ""
                if dry
                else " (evicted, deleted, a key there that is no hash, or RQ keeps its jobs "
                "elsewhere: job_key_prefix); left in the registry, as RQ leaves them"
            )
        )
    if elsewhere:
        parts.append(
            f"{elsewhere} failed job(s) {verb}: their origin is not queue {spec.rq_queue!r} "
            "(RQ requeues a job to its origin, and this step acts on its configured queue "
            f"only){left}: requeue them with RQ (rq requeue --queue {spec.rq_queue})"
        )
    if limited:
        parts.append(
            f"{limited} rate-limited job(s) {verb}: RQ requeues them through their rate limit, "
            f"to wait for a free slot{left}: requeue them with RQ (rq requeue --queue "
            f"{spec.rq_queue})"
        )
    return "".join(f"; {part}" for part in parts)
