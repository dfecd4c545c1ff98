"""A worker's crash through the pipeline on real PostgreSQL and Redis (dry-run, no cluster): a run
interrupted mid-way resumes from its unfinished steps, and on_resolved steps recorded before a
crash still run."""

from __future__ import annotations

from receiver.model import RunOutcome, Target
from tests.support.payloads import alert, notification
from tests.support.pipeline import MakeHarness
from tests.support.pipeline_restart import labels


async def test_a_run_interrupted_by_a_crash_is_resumed_from_its_unfinished_steps(
    make_harness: MakeHarness,
) -> None:
    rules = """
rules:
  - name: two-steps
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
      - action: kubernetes.scale
        params: {delta: 1, max: 5}
"""
    h = await make_harness(rules)
    await h.intake.accept(notification(alert(labels())))
    (claimed,) = await h.store.claim_events("crashed-worker", 1, 30.0)
    event = claimed.event
    # What a worker leaves behind when it dies after its first step: the run admitted and
    # RUNNING, step 0 done, step 1 still pending, the event claimed and never completed.
    run_id = await h.store.create_run(
        rule="two-steps", event=event, target=Target("Deployment", "shop", "web"), dry_run=True
    )
    assert run_id is not None
    await h.store.record_step(
        run_id, idx=0, action="kubernetes.rollout_restart", outcome="dry_run", params={}
    )
    await h.store.record_step(
        run_id, idx=1, action="kubernetes.scale", outcome="pending", params={"delta": 1, "max": 5}
    )
    await h.store.set_run_outcome(run_id, RunOutcome.RUNNING)

    disposition = await h.pipeline(event)  # the event, reclaimed by another worker

    assert disposition.is_done
    run = await h.store.get_run(run_id)
    assert run is not None
    assert run.outcome is RunOutcome.DRY_RUN
    assert [(s.idx, s.outcome) for s in run.steps] == [(0, "dry_run"), (1, "dry_run")]
    assert len(await h.runs()) == 1  # resumed, not planned a second time


async def test_on_resolved_steps_survive_a_crash_between_close_and_run(
    make_harness: MakeHarness,
) -> None:
    rules = """
rules:
  - name: scale-workers
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.scale
        params: {delta: 2, max: 5}
    on_resolved:
      - action: kubernetes.scale
        params: {restore: true, max: 5}
"""
    h = await make_harness(rules)
    await h.intake.accept(notification(alert(labels())))
    await h.drain()
    (run,) = await h.runs()
    await h.intake.accept(notification(alert(labels(), status="resolved")))
    (claimed,) = await h.store.claim_events("crashed-worker", 1, 30.0)
    # The worker recorded the on_resolved step and closed the run, then died.
    await h.store.record_step(
        run.id,
        idx=0,
        phase="resolve",
        action="kubernetes.scale",
        outcome="pending",
        params={"restore": True, "max": 5},
    )
    assert await h.store.close_run(run.id, run.created_at)

    assert (await h.pipeline(claimed.event)).is_done

    record = await h.store.get_run(run.id)
    assert record is not None
    assert [(s.phase, s.outcome) for s in record.steps] == [
        ("run", "dry_run"),
        ("resolve", "dry_run"),
    ]
