"""The work queues over HTTP and the CLI: GET /api/v1/events and /jobs (dead letters, paging,
skipped rules), retry and drop (audited), the dead-letter gauge, `remediator events`/`jobs`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from receiver.cli import main
from receiver.model import RunOutcome, Target
from receiver.store import JobKind, Store
from tests.support.events import new_event, new_run
from tests.support.http import OPERATOR, OPERATOR_NAME, OPERATOR_TOKEN, Client, MakeClient
from tests.support.pipeline import RESTART_WEB, MakeHarness

pytestmark = [pytest.mark.postgres]


async def dead_events(store: Store, n: int, alertname: str = "Poison") -> list[int]:
    """``n`` alert events (one alert each), each failed once with max 1 attempt: dead."""
    await store.insert_events([new_event(i, labels={"alertname": alertname}) for i in range(n)])
    ids = []
    for claim in await store.claim_events("w", n, lease_s=60):
        error = f"ValueError: poison {claim.event.id}"
        assert await store.fail_event(
            claim.event.id, "w", claim.attempts, error, delay_s=0, max_failures=1
        )
        ids.append(claim.event.id)
    return sorted(ids)


async def dead_job(store: Store) -> tuple[int, str]:
    run_id = await new_run(store, target=Target("Deployment", "shop", "web"))
    job_id = await store.enqueue_job(JobKind.VERIFY_DEADLINE, run_id)
    assert job_id is not None
    [claim] = await store.claim_jobs("w", 1, lease_s=60)
    assert (
        await store.fail_job(claim.id, "w", claim.attempts, "boom", delay_s=0, max_failures=1)
        == "dead"
    )
    return job_id, run_id


async def get(client: Client, path: str) -> tuple[int, dict[str, Any]]:
    response = await client.get(path, headers=OPERATOR)
    return response.status, await response.json()


async def post(client: Client, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    response = await client.post(path, headers=OPERATOR, json=body)
    return response.status, await response.json()


async def test_dead_events_are_listed_page_by_page_with_their_state(
    make_client: MakeClient, store: Store
) -> None:
    ids = await dead_events(store, 3)
    await store.insert_events([new_event("e" * 16, labels={"alertname": "Fine"})])
    client = await make_client()
    status, page = await get(client, "/api/v1/events?state=dead&limit=2")
    assert status == 200
    assert [e["id"] for e in page["events"]] == [ids[2], ids[1]]
    first = page["events"][0]
    assert (first["state"], first["attempts"], first["failures"]) == ("dead", 1, 1)
    assert first["last_error"] == f"ValueError: poison {ids[2]}"
    assert first["settled_reason"] is None
    assert first["skips"] == []
    assert first["labels"] == {"alertname": "Poison"}
    status, rest = await get(client, f"/api/v1/events?state=dead&cursor={page['next_cursor']}")
    assert status == 200
    assert [e["id"] for e in rest["events"]] == [ids[0]]
    assert rest["next_cursor"] is None
    status, everything = await get(client, "/api/v1/events")
    assert [e["state"] for e in everything["events"]] == ["pending", "dead", "dead", "dead"]

    status, one = await get(client, f"/api/v1/events/{ids[0]}")
    assert (status, one["event"]["id"], one["event"]["state"]) == (200, ids[0], "dead")
    for missing in ("999999", "abc", "9" * 30):
        status, answer = await get(client, f"/api/v1/events/{missing}")
        assert status == 404
        assert missing in answer["error"]

    response = await client.get("/api/v1/events?state=dead")
    assert response.status == 401


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("state=zombie", "state"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("cursor=abc", "cursor"),
        ("skipped=maybe", "skipped"),
        ("alertname=", "alertname"),
        ("outcome=failed", "outcome"),
    ],
)
async def test_a_bad_filter_is_400_naming_it(
    make_client: MakeClient, query: str, parameter: str
) -> None:
    client = await make_client()
    status, answer = await get(client, f"/api/v1/events?{query}")
    assert (status, answer["parameter"]) == (400, parameter)


async def test_retry_and_drop_over_the_api_are_audited(
    make_client: MakeClient, store: Store
) -> None:
    """Each row names the operator whose token was sent (``by``), as a pause does: before, every
    retry and drop over the API was recorded ``by: "api"``, and the run's timeline and the
    approvers' notices said "dropped by api", naming no one."""
    first, second = await dead_events(store, 2)
    client = await make_client()
    status, answer = await post(client, f"/api/v1/events/{first}/retry", {"reason": "fixed"})
    assert status == 200
    assert (answer["event"]["state"], answer["event"]["failures"]) == ("pending", 0)
    status, answer = await post(client, f"/api/v1/events/{first}/retry")
    assert status == 409
    assert "pending, not dead" in answer["error"]

    status, answer = await post(client, f"/api/v1/events/{second}/drop")
    assert (status, answer["field"]) == (400, "reason")
    status, answer = await post(client, f"/api/v1/events/{second}/drop", {"reason": " "})
    assert (status, answer["field"]) == (400, "reason")
    status, answer = await post(client, f"/api/v1/events/{second}/drop", ["not", "an object"])
    assert (status, answer["field"]) == (400, "body")
    status, answer = await post(client, f"/api/v1/events/{second}/drop", {"why": "poison"})
    assert (status, answer["field"]) == (400, "why")
    status, answer = await post(client, f"/api/v1/events/{first}/retry", {"reasons": "x"})
    assert (status, answer["field"]) == (400, "reasons")
    status, answer = await post(client, f"/api/v1/events/{second}/drop", {"reason": "poison"})
    assert status == 200
    assert answer["event"]["state"] == "done"
    assert answer["event"]["settled_reason"] == "dropped: poison"
    status, _ = await post(client, "/api/v1/events/999999/drop", {"reason": "x"})
    assert status == 404

    async with store._pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT kind, data->>'event_id' AS id, data->>'by' AS by, data->>'reason' AS why
               FROM audit_log WHERE kind IN ('event.retry', 'event.drop') ORDER BY id"""
        )
    assert [tuple(r) for r in rows] == [
        ("event.retry", str(first), OPERATOR_NAME, "fixed"),
        ("event.drop", str(second), OPERATOR_NAME, "poison"),
    ]
    assert await store.audit_entries("00000000-0000-0000-0000-000000000000") == []
    ok, _ = await store.verify_audit()
    assert ok


async def test_dead_jobs_over_the_api_and_the_metrics(
    make_client: MakeClient, store: Store, metrics: Any
) -> None:
    job_id, run_id = await dead_job(store)
    await dead_events(store, 2)
    metrics.track_dead_letters(store.dead_counts)
    client = await make_client()
    status, page = await get(client, f"/api/v1/jobs?state=dead&run_id={run_id}")
    assert status == 200
    [job] = page["jobs"]
    assert (job["id"], job["kind"], job["run_id"], job["last_error"]) == (
        job_id,
        "verify_deadline",
        run_id,
        "boom",
    )
    status, answer = await get(client, "/api/v1/jobs?run_id=not-a-uuid")
    assert (status, answer["parameter"]) == (400, "run_id")
    status, answer = await post(client, f"/api/v1/jobs/{job_id}/drop", {"reason": "run gone"})
    assert (status, answer["job"]["state"]) == (200, "done")
    [audit] = [a for a in await store.audit_entries(run_id) if a["kind"] == "job.drop"]
    assert audit["data"]["reason"] == "run gone"

    response = await client.get("/metrics")
    text = await response.text()
    assert 'remediator_dead_letters{queue="events"} 2.0' in text
    assert 'remediator_dead_letters{queue="jobs"} 0.0' in text


async def test_a_skipped_rule_is_recorded_on_its_event_and_listed(
    make_client: MakeClient, make_harness: MakeHarness
) -> None:
    h = await make_harness(RESTART_WEB)
    await h.deliver({"alertname": "HighMemoryUsage", "namespace": "kube-system", "deployment": "x"})
    await h.deliver({"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"})
    client = await make_client()
    status, page = await get(client, "/api/v1/events?skipped=true")
    assert status == 200
    [skipped] = page["events"]
    [skip] = skipped["skips"]
    assert skip["rule"] == "restart-web"
    assert skip["reason"].startswith("invalid target")
    assert "kube-system" in skip["reason"]
    status, one = await get(client, f"/api/v1/events/{skipped['id']}")
    assert one["event"]["skips"] == skipped["skips"]
    status, page = await get(client, "/api/v1/events?skipped=false")
    assert [e["labels"]["namespace"] for e in page["events"]] == ["shop"]
    assert len(await h.runs()) == 1


async def cli(client: Client, *args: str) -> Result:
    url = str(client.make_url("/"))
    env = {"REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN}
    # The command runs its own event loop, so it runs in a thread while this loop serves.
    return await asyncio.to_thread(CliRunner().invoke, main, [*args, "--url", url], env=env)


async def test_cli_lists_retries_and_drops_dead_letters(
    make_client: MakeClient, store: Store
) -> None:
    first, second, third = await dead_events(store, 3)
    await dead_job(store)
    client = await make_client()

    listed = await cli(client, "events", "--dead")
    assert listed.exit_code == 0, listed.output
    for event_id in (first, second, third):
        assert f"ValueError: poison {event_id}" in listed.stdout
    assert "1/1" in listed.stdout  # failed / all attempts
    as_json = await cli(client, "events", "--dead", "--limit", "1", "--json")
    assert as_json.exit_code == 0, as_json.output
    assert [e["id"] for e in json.loads(as_json.stdout)["events"]] == [third]
    shown = await cli(client, "events", "show", str(first))
    assert json.loads(shown.stdout)["last_error"] == f"ValueError: poison {first}"

    retried = await cli(client, "events", "retry", str(first), str(second), "--reason", "fixed")
    assert retried.exit_code == 0, retried.output
    assert f"event {first}: retried, now pending" in retried.stdout
    again = await cli(client, "events", "retry", str(first), str(third))
    assert again.exit_code == 1
    assert f"event {first}: " in again.stderr
    assert "HTTP 409" in again.stderr
    assert f"event {third}: retried" in again.stdout
    assert "1 of 2 events not retried" in again.stderr

    no_reason = await cli(client, "events", "drop", str(first))
    assert no_reason.exit_code == 2  # click: --reason is required
    # A blank reason was sent once per event, and three 400s printed (exit 1).
    ids = (str(first), str(second), str(third))
    blank = await cli(client, "events", "drop", *ids, "--reason", " ")
    assert blank.exit_code == 2, blank.output
    assert "'--reason': blank: say why" in blank.stderr
    assert "HTTP 400" not in blank.output
    dropped = await cli(client, "events", "drop", str(first), "--reason", "poison")
    assert dropped.exit_code == 0, dropped.output
    assert f"event {first}: dropped, now done" in dropped.stdout

    jobs = await cli(client, "jobs", "--dead")
    assert jobs.exit_code == 0, jobs.output
    assert "verify_deadline" in jobs.stdout
    assert "boom" in jobs.stdout
    bad = await cli(client, "events", "--dead", "--state", "done")
    assert bad.exit_code == 2


async def test_a_dropped_deadline_job_ends_its_verifying_run_over_the_api_and_the_cli(
    make_client: MakeClient, store: Store
) -> None:
    """Nothing else ends a verification past its deadline: the drop does, and says so."""
    client = await make_client()
    ids = []
    for i in range(2):
        run_id = await new_run(store, i, target=Target("Deployment", "shop", f"v{i}"))
        assert await store.set_run_outcome(run_id, RunOutcome.RUNNING)
        assert await store.set_run_outcome(
            run_id, RunOutcome.VERIFYING, verify_within_s=60, schedule=[("verify_deadline", 60)]
        )
        [job], _ = await store.list_jobs(run_id=run_id)
        ids.append((run_id, job["id"]))
    (over_api, api_job), (over_cli, cli_job) = ids

    status, answer = await post(client, f"/api/v1/jobs/{api_job}/drop", {"reason": "stuck"})
    assert (status, answer["job"]["state"], answer["job"]["run_ended"]) == (
        200,
        "done",
        "cancelled",
    )
    dropped = await cli(client, "jobs", "drop", str(cli_job), "--reason", "stuck")
    assert dropped.exit_code == 0, dropped.output
    assert f"job {cli_job}: dropped, now done; its run {over_cli} ended cancelled" in (
        dropped.stdout
    )
    for run_id in (over_api, over_cli):
        status, answer = await get(client, f"/api/v1/runs/{run_id}")
        assert status == 200
        assert answer["run"]["outcome"] == "cancelled"
        assert answer["run"]["error"].startswith("verification not done: its deadline job ")
        assert [a["kind"] for a in answer["audit"]][-2:] == ["job.drop", "run.outcome"]


async def test_cli_an_id_given_twice_is_acted_on_once(
    make_client: MakeClient, store: Store
) -> None:
    # `events retry 7 7` retried 7, then failed on it (409: not dead now), exit 1.
    first, second = await dead_events(store, 2)
    client = await make_client()
    retried = await cli(client, "events", "retry", str(first), str(second), str(first))
    assert retried.exit_code == 0, retried.output
    assert retried.stdout.splitlines() == [
        f"event {first}: retried, now pending",
        f"event {second}: retried, now pending",
    ]
