"""The run log: GET /api/v1/runs (filters, pages) and /api/v1/runs/{id}, and `remediator runs`."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.http.runs import RUNS_PATH
from receiver.model import AlertEvent, RunOutcome, Status, Target
from receiver.store import Store
from tests.support.http import OPERATOR, OPERATOR_TOKEN, Client, MakeClient

pytestmark = [pytest.mark.postgres]


def _event(n: int, alertname: str = "HighMemoryUsage") -> AlertEvent:
    return AlertEvent(
        id=n,
        fingerprint=f"{n:016x}",
        starts_at=f"2024-05-27T07:{n:02d}:00Z",
        status=Status.FIRING,
        labels={"alertname": alertname, "namespace": "demo"},
        annotations={},
    )


@pytest.fixture
async def three_runs(store: Store) -> list[str]:
    ids = []
    specs = [
        ("restart-on-high-memory", "HighMemoryUsage", Target("Deployment", "demo", "web")),
        ("restart-on-high-memory", "HighMemoryUsage", Target("Deployment", "demo", "api")),
        ("scale-on-backlog", "QueueBacklog", Target("Deployment", "demo", "worker")),
    ]
    for n, (rule, alertname, target) in enumerate(specs, start=1):
        run_id = await store.create_run(
            rule=rule, event=_event(n, alertname), target=target, dry_run=True
        )
        assert run_id is not None
        ids.append(run_id)
    await store.set_run_outcome(ids[2], RunOutcome.DRY_RUN)
    return ids


async def _runs(client: Client, query: str = "") -> tuple[int, dict[str, Any]]:
    response = await client.get(f"{RUNS_PATH}{query}", headers=OPERATOR)
    data: dict[str, Any] = await response.json()
    return response.status, data


async def test_runs_lists_newest_first(make_client: MakeClient, three_runs: list[str]) -> None:
    client = await make_client()
    status, data = await _runs(client)
    assert status == 200
    assert [r["id"] for r in data["runs"]] == list(reversed(three_runs))
    assert data["next_cursor"] is None
    first = data["runs"][0]
    assert first["target"] == {"kind": "Deployment", "namespace": "demo", "name": "worker"}
    assert first["outcome"] == "dry_run"


async def test_runs_filters(make_client: MakeClient, three_runs: list[str]) -> None:
    client = await make_client()
    cases = {
        "?rule=restart-on-high-memory": [three_runs[1], three_runs[0]],
        "?alertname=QueueBacklog": [three_runs[2]],
        "?target=Deployment/demo/api": [three_runs[1]],
        "?outcome=dry_run": [three_runs[2]],
        "?outcome=pending&rule=restart-on-high-memory": [three_runs[1], three_runs[0]],
        "?since=1h": list(reversed(three_runs)),
        "?since=2999-01-01T00:00:00Z": [],
        "?rule=unknown-rule": [],
    }
    for query, expected in cases.items():
        status, data = await _runs(client, query)
        assert status == 200, (query, data)
        assert [r["id"] for r in data["runs"]] == expected, query


async def test_runs_filter_by_a_target_outside_kubernetes(
    make_client: MakeClient, store: Store, three_runs: list[str]
) -> None:
    # A RedisQueue's name holds a '/': the key splits by its kind, not by counting slashes.
    queue = await store.create_run(
        rule="requeue",
        event=_event(9, "QueueBacklog"),
        target=Target("RedisQueue", "", "jobs/q"),
        dry_run=True,
    )
    client = await make_client()
    status, data = await _runs(client, "?target=RedisQueue/jobs/q")
    assert status == 200, data
    assert [r["id"] for r in data["runs"]] == [queue]
    assert data["runs"][0]["target"] == {"kind": "RedisQueue", "namespace": "", "name": "jobs/q"}


async def test_runs_pagination(make_client: MakeClient, three_runs: list[str]) -> None:
    client = await make_client()
    status, page1 = await _runs(client, "?limit=2")
    assert status == 200
    assert [r["id"] for r in page1["runs"]] == [three_runs[2], three_runs[1]]
    assert page1["next_cursor"]
    status, page2 = await _runs(client, f"?limit=2&cursor={page1['next_cursor']}")
    assert [r["id"] for r in page2["runs"]] == [three_runs[0]]
    assert page2["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?limit=0", "limit"),
        ("?limit=501", "limit"),
        ("?limit=ten", "limit"),
        ("?outcome=great", "outcome"),
        ("?since=yesterday", "since"),
        ("?since=2024-05-27T07:00:00", "since"),
        ("?target=web", "target"),
        ("?target=Deployment/web", "target"),
        ("?target=Gadget/shop/web", "target"),
        ("?target=PostgresDatabase/", "target"),
        ("?cursor=not-a-cursor", "cursor"),
        ("?rule=", "rule"),
        ("?colour=blue", "colour"),
    ],
)
async def test_runs_bad_filter_is_400_naming_it(
    make_client: MakeClient, query: str, parameter: str
) -> None:
    client = await make_client()
    status, data = await _runs(client, query)
    assert status == 400
    assert data["parameter"] == parameter
    assert data["error"]


async def test_runs_needs_auth(make_client: MakeClient) -> None:
    client = await make_client()
    response = await client.get(RUNS_PATH)
    assert response.status == 401


async def test_runs_since_is_relative_to_now(
    make_client: MakeClient, three_runs: list[str]
) -> None:
    client = await make_client()
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    status, data = await _runs(client, f"?since={past.replace('+', '%2B')}")
    assert status == 200
    assert len(data["runs"]) == 3


async def test_cli_runs_reads_the_api(make_client: MakeClient, three_runs: list[str]) -> None:
    from click.testing import CliRunner

    from receiver.cli import main

    client = await make_client()
    url = str(client.make_url("/"))
    env = {"REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN}
    # The command runs its own event loop, so it runs in a thread while this loop serves.
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["runs", "--url", url, "--rule", "scale-on-backlog"], env=env
    )
    assert result.exit_code == 0, result.output
    assert three_runs[2] in result.stdout
    assert "Deployment/demo/worker" in result.stdout
    assert three_runs[0] not in result.stdout

    as_json = await asyncio.to_thread(
        CliRunner().invoke, main, ["runs", "--url", url, "--limit", "2", "--json"], env=env
    )
    assert as_json.exit_code == 0, as_json.output
    assert len(json.loads(as_json.stdout)["runs"]) == 2

    # A table that is one page of more says how to get the next one.
    first_page = await asyncio.to_thread(
        CliRunner().invoke, main, ["runs", "--url", url, "--limit", "2"], env=env
    )
    assert first_page.exit_code == 0, first_page.output
    assert three_runs[0] not in first_page.stdout
    [cursor] = re.findall(r"^more: --cursor (\S+)$", first_page.stdout, re.M)
    rest = await asyncio.to_thread(
        CliRunner().invoke,
        main,
        ["runs", "--url", url, "--limit", "2", "--cursor", cursor],
        env=env,
    )
    assert rest.exit_code == 0, rest.output
    assert three_runs[0] in rest.stdout
    assert "more:" not in rest.stdout

    # What the server refuses is named by the option that gave it; a --limit outside 1..500
    # is refused before anything is sent (test_cli_integers.py).
    bad = await asyncio.to_thread(
        CliRunner().invoke, main, ["runs", "--url", url, "--since", "1y"], env=env
    )
    assert bad.exit_code == 1
    assert "HTTP 400 (--since)" in bad.stderr

    denied = await asyncio.to_thread(CliRunner().invoke, main, ["runs", "--url", url], env={})
    assert denied.exit_code == 1
    assert "HTTP 401" in denied.stderr


def test_cli_runs_against_an_unreachable_server_is_a_clear_error() -> None:
    from click.testing import CliRunner

    from receiver.cli import main

    result = CliRunner().invoke(main, ["runs", "--url", "http://127.0.0.1:1"], env={})
    assert result.exit_code == 1
    assert "cannot reach the service at http://127.0.0.1:1: connection refused" in result.stderr
    assert "Traceback" not in result.output


async def test_one_run_with_its_steps_and_audit_trail(
    make_client: MakeClient, store: Store, three_runs: list[str]
) -> None:
    run_id = three_runs[0]
    await store.record_step(
        run_id,
        idx=0,
        action="kubernetes.rollout_restart",
        outcome="ok",
        params={},
        message="rollout restart Deployment demo/web",
        before={"restartedAt": None},
        after={"restartedAt": "now"},
    )
    client = await make_client()

    response = await client.get(f"{RUNS_PATH}/{run_id}", headers=OPERATOR)
    assert response.status == 200
    data = await response.json()
    assert data["run"]["id"] == run_id
    assert [(s["action"], s["outcome"], s["after"]) for s in data["run"]["steps"]] == [
        ("kubernetes.rollout_restart", "ok", {"restartedAt": "now"})
    ]
    assert data["audit"], "every change of a run is in the audit log"
    assert {entry["run_id"] for entry in data["audit"]} == {run_id}

    # The list does not pretend a run had no steps: it simply does not carry them.
    status, page = await _runs(client)
    assert status == 200
    assert all("steps" not in row for row in page["runs"])


async def test_one_run_unknown_or_malformed_is_404_and_needs_auth(
    make_client: MakeClient, three_runs: list[str]
) -> None:
    client = await make_client()
    for run_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = await client.get(f"{RUNS_PATH}/{run_id}", headers=OPERATOR)
        assert response.status == 404
        assert run_id in (await response.json())["error"]
    response = await client.get(f"{RUNS_PATH}/{three_runs[0]}")
    assert response.status == 401


async def test_a_failed_verification_reads_the_same_in_the_api_and_the_cli(
    make_client: MakeClient, store: Store
) -> None:
    from click.testing import CliRunner

    from receiver.cli import main

    target = Target("Deployment", "demo", "web")
    run_id = await store.create_run(
        rule="restart-on-high-memory",
        event=_event(7),
        target=target,
        dry_run=False,
        verify_within_s=600,
        settle_s=1800,
        decision={"occurrence": 1, "steps": []},
    )
    assert run_id is not None
    await store.set_run_outcome(run_id, RunOutcome.VERIFYING)
    assert await store.close_run(run_id, datetime.now(UTC)) == "verifying"  # settling
    assert await store.fail_recurred(run_id, 99) is not None
    client = await make_client()

    response = await client.get(f"{RUNS_PATH}/{run_id}", headers=OPERATOR)
    run = (await response.json())["run"]
    assert (run["outcome"], run["verify_result"]) == ("failed", "recurred")
    assert run["decision"] == {"occurrence": 1, "steps": []}
    assert run["settle_until"] is not None
    assert run["escalated_at"] is not None
    assert "fired again on the target (event 99)" in run["error"]

    status, page = await _runs(client, "?outcome=failed")
    assert (status, [r["id"] for r in page["runs"]]) == (200, [run_id])
    status, _ = await _runs(client, "?outcome=verified")
    assert status == 200
    status, error = await _runs(client, "?outcome=resolved")  # the old name
    assert (status, error["parameter"]) == (400, "outcome")
    assert "verified" in error["error"]

    env = {"REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN}
    url = str(client.make_url("/"))
    result = await asyncio.to_thread(CliRunner().invoke, main, ["runs", "--url", url], env=env)
    assert result.exit_code == 0, result.output
    assert "failed (recurred)" in result.stdout


async def test_a_run_resolved_before_its_steps_acted_reads_so_in_the_api_and_the_cli(
    make_client: MakeClient, store: Store
) -> None:
    from click.testing import CliRunner

    from receiver.cli import main

    target = Target("Deployment", "demo", "web")
    run_id = await store.create_run(
        rule="restart-on-high-memory",
        event=_event(8),
        target=target,
        dry_run=False,
        verify_within_s=600,
    )
    assert run_id is not None
    await store.set_run_outcome(run_id, RunOutcome.RUNNING)
    await store.set_run_outcome(run_id, RunOutcome.VERIFYING)
    ran = await store.get_run(run_id, with_steps=False)
    assert ran is not None
    assert ran.started_at is not None
    # The alert resolved 5 s before the run began (no step recorded a start).
    assert await store.close_run(run_id, ran.started_at - timedelta(seconds=5)) == "succeeded"
    client = await make_client()

    response = await client.get(f"{RUNS_PATH}/{run_id}", headers=OPERATOR)
    run = (await response.json())["run"]
    assert (run["outcome"], run["verify_result"]) == ("succeeded", "resolved_before_action")
    assert run["error"].endswith("; not credited to the rule")

    # Wide enough that the table keeps the cell on one line.
    env = {"REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN, "COLUMNS": "250"}
    url = str(client.make_url("/"))
    result = await asyncio.to_thread(CliRunner().invoke, main, ["runs", "--url", url], env=env)
    assert result.exit_code == 0, result.output
    assert "succeeded (resolved before action)" in result.stdout
