"""The target lock of a run that has ended, given back now or, Redis not answering, by a job.

A pass that ends a run without holding the lock's release itself (its alert's resolution
cancelling it, a guard refusing it as it is taken up again, an admission that found it ended:
``overtaken.release_admitted_lock``, ``Admit``; the HTTP drop of the job a run waited on,
which queues its job itself: http/queues.py) used to log a release Redis did not answer (a
blip; a Redis that persists, as a deployment's must, keeps the lock over its restart), and the
lock held the target until ``guards.lock_ttl`` (10 minutes by default): every new alert of the
target waited it out, though the run that held it had ended. Such a pass cannot be retried
instead, as a follow-up's is (lock_back.py): the run's end is written, and a retry leaves an
ended run alone. So the release is queued: a ``release_lock`` job on the run, its payload the
exact token to give back (``token:<token>``), or, for a run the store never saw admitted,
``held_by_run`` (``Guards.release_run``). The job (``release_queued``) asks Redis until it
answers (a retry after ``guards_down_retry_s`` each time it does not, not counted as a
failure).

Idempotent and fail closed: each token is given back by compare-and-delete (``Guards.release``),
so never a later admission's lock, of the run's own follow-up or of another run, and a token
given back already is a no-op; the lock stays held until then, so no second run is admitted on
the target meanwhile. ``held_by_run`` is given back only while the run has ended: a run that
ended never admitted changed nothing, so no follow-up of it takes the lock under its id. The
store not answering the enqueue either: logged, the lock ends with its TTL, as before.

``released_if_unrecorded`` gives back, for ``Admit``, the lock of an admission the store could
not record, and logs the lock kept when Redis does not take it back either.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

from receiver.guards.policy import Admission, AdmissionRequest, GuardUnavailable
from receiver.model import Disposition, GuardSpec, RunOutcome
from receiver.pipeline.context import Deps
from receiver.store import FINISH_HELD_BY_RUN, FINISH_RELEASE, JobKind, StoreUnavailable
from remediations.targets import Target

__all__ = [
    "GIVE_BACK",
    "HELD_BY_RUN",
    "release_or_queue",
    "release_queued",
    "released_if_unrecorded",
]

# The payload's keys: one per token (merged over the open job's payload, so two passes'
# tokens are both kept), and one for a lock the run holds under a token nobody knows. The
# same as a ``finish_end`` job's (receiver.store.finish), which gives them back here too.
GIVE_BACK = FINISH_RELEASE
HELD_BY_RUN = FINISH_HELD_BY_RUN

# Outcomes of a run still open: it may be admitted again, under its id.
_OPEN = frozenset({RunOutcome.PENDING, RunOutcome.RUNNING, RunOutcome.AWAITING_APPROVAL})


async def release_or_queue(
    deps: Deps, run_id: str, rule: str, target: Target, token: str | None, log: Any
) -> bool | None:
    """Give back ``target``'s lock if it holds exactly ``token`` (None: if run ``run_id``
    holds it under any token, ``Guards.release_run``, only for a run that ended never
    admitted as the store knows). Whether it was given back now (False: not held so). None
    when Redis did not answer: a ``release_lock`` job is queued to give it back (logged).
    Raises GuardError (a Lua error: asking again
    would fail again)."""
    request = AdmissionRequest(run_id, rule, target, False, GuardSpec())
    try:
        if token is None:
            return await deps.guards.release_run(request)
        return await deps.guards.release(request, Admission(True, lock_token=token))
    except GuardUnavailable as exc:
        await _queue(deps, run_id, token, log, str(exc))
        return None


async def _queue(deps: Deps, run_id: str, token: str | None, log: Any, error: str) -> None:
    payload = {HELD_BY_RUN: True} if token is None else {GIVE_BACK + token: True}
    try:
        await deps.store.enqueue_job(
            JobKind.RELEASE_LOCK,
            run_id,
            delay_s=deps.settings.guards_down_retry_s,
            payload=payload,
        )
    except StoreUnavailable as exc:
        log.warning(
            "could not release the target lock, nor queue its release: it ends with its TTL",
            error=error,
            store_error=str(exc),
        )
        return
    log.warning("could not release the target lock; a release_lock job gives it back", error=error)


async def release_queued(
    deps: Deps, run_id: str, payload: Mapping[str, Any], log: Any
) -> Disposition:
    """The ``release_lock`` job of run ``run_id``: give back each token ``payload`` names,
    then, when it says ``held_by_run`` and the run has ended, the lock the run holds under
    any token. Done when Redis answered each (given back, or held no more); a retry after
    ``guards_down_retry_s`` when it did not (what was given back stays so: compare-and-delete
    again is a no-op). A run that no longer exists (pruned) holds nothing to look for.
    Raises GuardError and StoreUnavailable (a failed attempt)."""
    run = await deps.store.get_run(run_id, with_steps=False)
    if run is None:
        log.info("no run to give a target lock back for")
        return Disposition.done()
    tokens = sorted(key[len(GIVE_BACK) :] for key in payload if key.startswith(GIVE_BACK))
    request = AdmissionRequest(run.id, run.rule, run.target, False, GuardSpec())
    released: list[str] = []
    try:
        for token in tokens:
            if await deps.guards.release(request, Admission(True, lock_token=token)):
                released.append(token)
        held_by_run = bool(payload.get(HELD_BY_RUN)) and run.outcome not in _OPEN
        if held_by_run and await deps.guards.release_run(request):
            released.append("held by the run")
    except GuardUnavailable as exc:
        log.warning("could not release the target lock", error=str(exc))
        return Disposition.retry(
            deps.settings.guards_down_retry_s,
            "guards unavailable (Redis): the target lock of an ended run could not be given "
            "back; it will be retried",
        )
    if released:
        log.info("gave back the target lock an ended run's pass could not", target=run.target.key)
    return Disposition.done()


@contextlib.asynccontextmanager
async def released_if_unrecorded(
    deps: Deps, request: AdmissionRequest, admission: Admission, log: Any
) -> AsyncIterator[None]:
    """Around ``Admit``'s write of an admission: release ``admission``'s target lock when
    recording it in the store fails (its TTL kept the alert's next episode waiting once the
    event had failed for good); a retry takes it again (admission is idempotent per run id).
    The store's error is raised whatever the release does: the event or job is kept for its
    retry. A failed release leaves the lock held, the safe side (the retry's admission writes
    over it, or its TTL ends it), logged with the run's id and both errors; before, it was
    swallowed unsaid."""
    try:
        yield
    except Exception as exc:
        try:
            await deps.guards.release(request, admission)
        except Exception as release_exc:  # the store's error is the one that counts
            log.warning(
                "the run's admission could not be recorded, nor its target lock given back: "
                "it holds the target until the retry admits the run again, or its TTL",
                run_id=request.run_id,
                target=request.target.key,
                error=str(exc),
                release_error=str(release_exc),
            )
        raise
