"""A run or its approvals ended by an operator's drop of a job (``POST /api/v1/jobs/{id}/drop``,
``remediator jobs drop``) is followed as every other ending is, once the drop committed: the
run and its cancelled approvals counted (http/queues.py ``_run_ended``), its unused budget slot
given back (never when a step of it may have acted) and the approvers told, by the
``finish_end`` job queued with the drop (pipeline/finish_end.py; its durability:
test_drop_finish_job.py); the CLI says what the answer says; the review words the rows. Real
PostgreSQL, Redis, and a local HTTP server for the approvers' channel.

Before, the drop skipped all of it: ``remediator_runs_total`` never counted the run, the
budget slot of a run that had changed nothing stayed spent for the hour, the approvers still
saw an open approval, the CLI said "not run" of a step a worker had stopped in and nothing of
what a dropped escalation left undone, and the review showed those rows as raw JSON.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from receiver.guards.policy import AdmissionRequest, GuardSettings
from receiver.http.approvals import ApprovalWeb
from receiver.model import GuardSpec, RunOutcome
from receiver.review.loader import Review
from receiver.review.markdown import render_markdown
from receiver.review.timeline import run_timeline
from receiver.store import JobKind, Store
from receiver.store.job_ends import ESCALATION_NOT_DONE
from receiver.telemetry import Metrics
from tests.integration.http.test_queues import cli
from tests.integration.test_approval_budget import RULES
from tests.integration.test_dropped_resume_jobs import open_job, pending_run, target
from tests.integration.test_dropped_running_resume import failed_run, stopped_run
from tests.support.approvals import DisruptivePoke, MakeApprovalEnv, Peer, budget_slots, poke_labels
from tests.support.http import OPERATOR, OPERATOR_NAME, MakeClient

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def counted(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


async def test_a_dropped_parked_run_is_counted_gives_its_slot_back_and_tells_its_approvers(
    approval_env: MakeApprovalEnv, peer: Peer, make_client: MakeClient, metrics: Metrics
) -> None:
    env = await approval_env(
        rules=RULES,
        actions=[DisruptivePoke(peer.url)],
        guard_settings=GuardSettings(budget_count=1),
        metrics=metrics,
    )
    await env.harness.deliver(poke_labels("api"))
    [run] = await env.harness.runs()
    assert run.outcome is RunOutcome.AWAITING_APPROVAL
    assert await budget_slots(env) == [run.id]  # its admission drew the one slot
    job_id = await open_job(env.harness.store, run.id, JobKind.RESUME_RUN)
    client = await make_client(
        approvals=ApprovalWeb(env.desk, env.identities), locks=env.harness.guards
    )

    response = await client.post(
        f"/api/v1/jobs/{job_id}/drop", headers=OPERATOR, json={"reason": "stale"}
    )

    assert response.status == 200
    job = (await response.json())["job"]
    assert job["run_ended"] == "cancelled"
    assert counted(metrics, "remediator_runs_total", rule="poke", outcome="cancelled") == 1
    assert counted(metrics, "remediator_approvals_total", rule="poke", state="cancelled") == 1
    await env.harness.drain()  # the finish_end job
    # Nothing of it acted: the slot is back, and the next disruptive run is admitted.
    assert peer.value == 0
    assert await budget_slots(env) == []
    *_, notice = peer.notices
    assert notice["kind"] == "approval.cancelled"
    assert f"its resume_run job {job_id} was dropped by {OPERATOR_NAME} (stale)" in notice["text"]
    assert notice["approval"]["id"] == job["approvals_cancelled"][0]
    await env.harness.deliver(poke_labels("web"))
    [second] = [r for r in await env.harness.runs() if r.target.name == "web"]
    assert second.refusal_guard is None


async def test_a_dropped_run_a_worker_stopped_in_keeps_its_slot(
    approval_env: MakeApprovalEnv, make_client: MakeClient, metrics: Metrics
) -> None:
    """Its step 1 was ``started``: it may have acted, so the slot stays spent (fail closed,
    as ``BudgetRefund`` decides for every ending); the run is counted all the same."""
    env = await approval_env(metrics=metrics)
    store = env.harness.store
    run_id = await stopped_run(store, 30)
    admission = AdmissionRequest(run_id, "r", target(30), True, GuardSpec())
    assert (await env.harness.guards.admit(admission)).admitted
    budget = env.harness.guards.keys.budget()
    assert await env.harness.guards._redis.zscore(budget, run_id) is not None
    client = await make_client(
        approvals=ApprovalWeb(env.desk, env.identities), locks=env.harness.guards
    )
    job_id = await open_job(store, run_id, JobKind.RESUME_RUN)

    response = await client.post(
        f"/api/v1/jobs/{job_id}/drop", headers=OPERATOR, json={"reason": "stuck"}
    )

    assert response.status == 200
    assert (await response.json())["job"]["steps_interrupted"] == [1]
    assert counted(metrics, "remediator_runs_total", rule="r", outcome="cancelled") == 1
    assert await env.harness.drain() == 1  # the finish_end job
    assert await env.harness.guards._redis.zscore(budget, run_id) is not None


async def test_the_cli_says_what_the_drop_ended_and_left_undone(
    make_client: MakeClient, store: Store, metrics: Metrics
) -> None:
    """Without an approval desk on the app, the ended run is still counted."""
    client = await make_client()
    running = await stopped_run(store, 31)
    failed = await failed_run(store, 32)
    running_job = await open_job(store, running, JobKind.RESUME_RUN)
    failed_job = await open_job(store, failed, JobKind.RESUME_RUN)

    dropped = await cli(
        client, "jobs", "drop", str(running_job), str(failed_job), "--reason", "stuck"
    )

    assert dropped.exit_code == 0, dropped.output
    assert (
        f"job {running_job}: dropped, now done; its run {running} ended cancelled; "
        "step 2 not run; step 1 interrupted (a worker stopped in it: it may have acted); "
        "target lock: no guards here: the lock ends with its TTL\n"
    ) in dropped.stdout
    assert f"job {failed_job}: dropped, now done; not done: {ESCALATION_NOT_DONE}\n" in (
        dropped.stdout
    )
    assert counted(metrics, "remediator_runs_total", rule="r", outcome="cancelled") == 1


async def test_the_review_words_a_dropped_escalation(store: Store) -> None:
    run_id = await failed_run(store, 33)
    job_id = await open_job(store, run_id, JobKind.RESUME_RUN)
    await store.drop_item("job", job_id, actor="alice", reason="noisy")

    run = await Review(store).run(run_id)

    assert run is not None
    entries = {e.kind: e for e in run_timeline(run)}
    assert "other" not in entries
    dropped = entries["operator"]
    assert dropped.title == f"Job {job_id} (resume_run) dropped by alice: noisy"
    assert dropped.detail == "it was pending after 0 attempts, 0 failed"
    undone = entries["escalation"]
    why = f"its resume_run job {job_id} was dropped by alice (noisy)"
    assert (undone.title, undone.detail, undone.tone) == (
        f"Escalation not taken up: {why}",
        f"not done: {ESCALATION_NOT_DONE}",
        "warn",
    )


async def test_the_review_does_not_say_the_alert_resolved_of_a_run_a_drop_cancelled(
    store: Store,
) -> None:
    """A run waiting for its target lock, cancelled by an operator's drop of its job, while its
    alert still fires. Before, its timeline said "Run cancelled: the alert resolved first" and
    the report's alert row "cancelled: resolved before approval": neither happened."""
    run_id = await pending_run(store, 34)
    job_id = await open_job(store, run_id, JobKind.RESUME_RUN)
    await store.drop_item("job", job_id, actor="alice", reason="gone")
    review = Review(store)

    run = await review.run(run_id)

    assert run is not None
    [ended] = [e for e in run_timeline(run) if e.kind == "outcome"]
    why = f"its resume_run job {job_id} was dropped by alice (gone)"
    assert (ended.title, ended.detail) == (
        "Run cancelled",
        f"cancelled while waiting for the target lock: {why}",
    )
    assert run.created_at is not None
    report = await review.report(run.created_at, run.created_at + timedelta(hours=1))
    [incident] = report["incidents"]
    [alert] = incident["alerts"]
    assert alert["status"] == "cancelled"
    # Its row: not resolved (the column empty), and no word of a resolution.
    [row] = [line for line in render_markdown(report).splitlines() if "deployment=" in line]
    assert row.endswith("|   |   | cancelled before acting (r) |"), row
