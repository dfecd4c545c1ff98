"""A run ended by a pass that could not give its target lock back: Redis held the release.

Before, the pass that ends a run without holding the lock's release itself (its alert's
resolution, a guard refusing it as it is taken up again, an admission that found it ended)
logged a release Redis did not answer, and the lock held the Deployment until
``guards.lock_ttl`` (10 minutes): every new alert of it was refused by the lock meanwhile,
though the run that held it had ended. Now the pass queues a ``release_lock`` job naming the
exact token (or, for a run the store never saw admitted, the run), and the job gives the lock
back once Redis answers. Real PostgreSQL and Redis; Redis holds every write back while the pass
runs (``CLIENT PAUSE WRITE``: the release times out, and never lands after the pause ends).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from receiver.guards.policy import Admission, AdmissionRequest, GuardSettings
from receiver.model import GuardSpec, RunOutcome
from receiver.pipeline.context import RESOLVE_GUARDS
from receiver.store import JobKind
from remediations.targets import Target
from tests.integration.test_dead_worker_lock import RULE, Dies, _killed_mid_step
from tests.integration.test_run_end_crash import Counts, _labels, _rule
from tests.integration.test_unrecorded_admission_lock import _admitted_unrecorded
from tests.support.leases import take_over_job
from tests.support.payloads import alert, notification
from tests.support.pipeline import Harness, MakeHarness
from tests.support.target_locks import lock_holder, taken_up_after_the_lock, writes_held

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

WEB = Target("Deployment", "shop", "web")
# A held call gives up after this long: the tests wait it out once or twice per pass.
QUICK = GuardSettings(timeout_s=0.5)


async def _release_jobs(h: Harness, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The state and payload of each ``release_lock`` job of the run."""
    async with h.store._tx() as conn:
        rows = await conn.fetch(
            "SELECT state, payload FROM jobs WHERE run_id = $1::uuid AND kind = $2 ORDER BY id",
            run_id,
            JobKind.RELEASE_LOCK,
        )
    return [(row["state"], json.loads(row["payload"])) for row in rows]


async def _released_by_its_job(h: Harness, run_id: str) -> None:
    """The run's ``release_lock`` job, made due now (it waits ``guards_down_retry_s``), runs
    with Redis answering; then the target is free: another run is admitted on it."""
    await h.store.enqueue_job(JobKind.RELEASE_LOCK, run_id, delay_s=0)
    await h.drain()
    assert await lock_holder(h) is None
    assert [state for state, _ in await _release_jobs(h, run_id)] == ["done"]
    other = AdmissionRequest(str(uuid.uuid4()), "other", WEB, False, GuardSpec())
    assert (await h.guards.admit(other, only=RESOLVE_GUARDS)).admitted


async def test_a_run_its_resolution_ended_while_redis_held_the_release_frees_the_target(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker died holding the lock; the alert resolves and a job ends the run
    ``cancelled``, Redis holding its release of the lock the run's admission took. Before,
    that was logged and the lock held the target to its TTL."""
    h = await make_harness(RULE, QUICK, extra_actions=[Dies()], dry_run=False)
    first = await _killed_mid_step(h, monkeypatch)
    token = await h.store.admitted_lock(first)
    assert token

    await h.intake.accept(notification(alert(_labels("web-1"), status="resolved")))
    await h.store.enqueue_job(JobKind.RESUME_RUN, first, delay_s=0)
    (job,) = await h.store.claim_jobs("worker-b", 1, 30.0)
    async with writes_held(h.guards.redis):
        assert (await h.pipeline.run_job(job)).is_done
    await h.store.complete_job(job.id, "worker-b", job.attempts)
    ended = await h.store.get_run(first)
    assert ended is not None
    assert ended.outcome is RunOutcome.CANCELLED, (ended.outcome, ended.error)
    assert await lock_holder(h) == first  # the held release did not land when Redis answered
    assert await _release_jobs(h, first) == [("pending", {f"token:{token}": True})]

    # Its first try meets Redis still holding writes: retried, the lock still held.
    await h.store.enqueue_job(JobKind.RELEASE_LOCK, first, delay_s=0)
    (release,) = await h.store.claim_jobs("worker-b", 1, 30.0)
    async with writes_held(h.guards.redis):
        retried = await h.pipeline.run_job(release)
    assert not retried.is_done
    assert "could not be given back" in (retried.error or "")
    await h.store.release_job(release.id, "worker-b", release.attempts, 0.0, retried.error)
    assert await lock_holder(h) == first
    await _released_by_its_job(h, first)


async def test_a_run_never_seen_admitted_closed_while_redis_held_the_release_frees_it(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis admitted the run's job and its worker died before the store recorded it; the
    alert's resolution closes the run (``Close``: cancelled, never admitted as the store
    saw it), Redis holding its release of the lock the run holds under a token nobody
    knows. Before, that was logged and the lock held the target to its TTL."""
    counts = Counts()
    h = await make_harness(_rule(Counts.name), QUICK, extra_actions=[counts], dry_run=False)
    first, dead_job = await _admitted_unrecorded(h, monkeypatch)

    await h.intake.accept(notification(alert(_labels("web-1"), status="resolved")))
    async with writes_held(h.guards.redis):
        await h.drain()
    ended = await h.store.get_run(first)
    assert ended is not None
    assert ended.outcome is RunOutcome.CANCELLED, (ended.outcome, ended.error)
    assert await lock_holder(h) == first
    assert await _release_jobs(h, first) == [("pending", {"held_by_run": True})]

    # The dead worker's job holds the run's queue until its lease runs out (one job of a
    # run at a time); taken over then, it finds the run ended.
    job = await take_over_job(h.store, dead_job, h.owner)
    assert (await h.pipeline.run_job(job)).is_done
    await h.store.complete_job(job.id, h.owner, job.attempts)
    await _released_by_its_job(h, first)
    assert counts.calls == 0


async def test_an_admission_that_found_the_run_ended_queues_its_own_token(
    make_harness: MakeHarness,
) -> None:
    """The run waited for the lock; its job takes it up, and Redis admits it just as its
    alert's resolution is stored, then holds every write: the admission is not recorded
    (the alert resolved), and its lock's release (``Admit``) is held, as is the one of the
    run's end. Before, both were logged and the lock, this admission's, held the target to
    its TTL. Now the job names this admission's token (no other pass knows it)."""
    counts = Counts()
    h = await make_harness(_rule(Counts.name), QUICK, extra_actions=[counts], dry_run=False)
    run, job = await taken_up_after_the_lock(h, WEB, _labels("web-1"))
    admitted: list[Admission] = []
    admit = h.guards.admit

    async def admit_then_resolve(req: AdmissionRequest, **kwargs: Any) -> Admission:
        # The real admission; then, before the run's worker records it, the alert resolves.
        admission = await admit(req, **kwargs)
        admitted.append(admission)
        await h.intake.accept(notification(alert(_labels("web-1"), status="resolved")))
        await h.guards.redis.execute_command("CLIENT", "PAUSE", 60_000, "WRITE")
        return admission

    h.guards.admit = admit_then_resolve  # type: ignore[method-assign]
    try:
        await h.pipeline.run_job(job)
    finally:
        await h.guards.redis.execute_command("CLIENT", "UNPAUSE")
        h.guards.admit = admit  # type: ignore[method-assign]
    await h.store.complete_job(job.id, "worker-a", job.attempts)
    ended = await h.store.get_run(run.id)
    assert ended is not None
    assert ended.outcome is RunOutcome.CANCELLED, (ended.outcome, ended.error)
    (admission,) = admitted
    assert await lock_holder(h) == run.id
    [(state, payload)] = await _release_jobs(h, run.id)
    assert state == "pending"
    assert payload.get(f"token:{admission.lock_token}") is True, payload

    await _released_by_its_job(h, run.id)
    assert counts.calls == 0


async def test_a_release_job_leaves_another_runs_lock_and_an_open_runs_alone(
    make_harness: MakeHarness,
) -> None:
    """The job gives back only the tokens it names, by compare-and-delete: the lock another
    run took since (the ended run's expired) stays; a run that is open again (never the
    case for one ended, but the job does not trust that) keeps a lock held under its id."""
    counts = Counts()
    h = await make_harness(_rule(Counts.name), extra_actions=[counts], dry_run=False)
    await h.deliver(_labels("web-1"))
    (run,) = await h.runs()
    assert run.outcome is RunOutcome.SUCCEEDED
    token = await h.store.admitted_lock(run.id)
    assert token
    other = AdmissionRequest("another-run", "other", WEB, False, GuardSpec())
    held = await h.guards.admit(other, only=RESOLVE_GUARDS)
    assert held.admitted
    payload = {f"token:{token}": True, "held_by_run": True}
    await h.store.enqueue_job(JobKind.RELEASE_LOCK, run.id, payload=payload)
    await h.drain()
    assert await lock_holder(h) == "another-run"
    assert [state for state, _ in await _release_jobs(h, run.id)] == ["done"]

    assert await h.guards.release(other, held)
    mine = AdmissionRequest(run.id, run.rule, WEB, False, GuardSpec())
    assert (await h.guards.admit(mine, only=RESOLVE_GUARDS)).admitted
    async with h.store._tx() as conn:
        await conn.execute("UPDATE runs SET outcome = 'running' WHERE id = $1::uuid", run.id)
    await h.store.enqueue_job(JobKind.RELEASE_LOCK, run.id, payload={"held_by_run": True})
    await h.drain()
    assert await lock_holder(h) == run.id
