"""The approvals API over real HTTP, on the real store, and the `remediator approvals` CLI
that calls it: only an approver decides; it lists and decides once; approving after the alert
resolved is refused; an empty filter is refused as the runs API refuses it."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from click.testing import CliRunner, Result

from receiver.cli import main
from receiver.model import ApprovalState, RunOutcome
from tests.integration.http.conftest import MakeEdge
from tests.support.approvals import OPERATORS, poke_labels
from tests.support.http import AUTH, OPERATOR
from tests.support.payloads import alert, notification


async def test_api_needs_an_approver_for_approve_and_reject(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    api = f"/api/v1/approvals/{approval.id}"
    carol = {"Authorization": f"Bearer {OPERATORS['carol']}"}
    for decision in ("approve", "reject"):
        assert (await edge.client.post(f"{api}/{decision}")).status == 401
        assert (await edge.client.post(f"{api}/{decision}", headers=AUTH)).status == 403  # webhook
        response = await edge.client.post(f"{api}/{decision}", headers=carol, json={"reason": "x"})
        assert response.status == 403
        assert "carol may not decide" in (await response.json())["error"]
    assert (await edge.client.get("/api/v1/approvals", headers=AUTH)).status == 403
    assert (await edge.env.desk.store.get_approval(approval.id)).state is ApprovalState.PENDING  # type: ignore[union-attr]


async def test_api_lists_and_decides(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    _run, approval = await edge.env.pending_run()
    bob = {"Authorization": f"Bearer {OPERATORS['bob']}"}
    listed = await (await edge.client.get("/api/v1/approvals?state=pending", headers=bob)).json()
    assert [a["id"] for a in listed["approvals"]] == [approval.id]
    assert listed["approvals"][0]["plan_hash"] == approval.plan_hash
    bad = await edge.client.get("/api/v1/approvals?state=maybe", headers=bob)
    assert (bad.status, (await bad.json())["parameter"]) == (400, "state")

    # A misspelt field is refused, not decided without it.
    typo = await edge.client.post(
        f"/api/v1/approvals/{approval.id}/reject", headers=bob, json={"reasn": "not now"}
    )
    assert typo.status == 400
    assert (await typo.json())["field"] == "reasn"
    assert "did you mean 'reason'?" in (await typo.json())["error"]
    response = await edge.client.post(
        f"/api/v1/approvals/{approval.id}/reject", headers=bob, json={"reason": "not now"}
    )
    assert response.status == 200
    body = await response.json()
    assert (body["approval"]["state"], body["approval"]["decided_by"]) == ("rejected", "bob")
    assert (await edge.env.harness.only_run()).outcome is RunOutcome.REJECTED
    again = await edge.client.post(f"/api/v1/approvals/{approval.id}/approve", headers=bob)
    assert again.status == 409
    one = await (await edge.client.get(f"/api/v1/approvals/{approval.id}", headers=bob)).json()
    assert one["approval"]["reason"] == "not now"


async def test_api_approving_after_the_alert_resolved_is_refused(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    await edge.env.harness.intake.accept(notification(alert(poke_labels(), status="resolved")))
    alice = {"Authorization": f"Bearer {OPERATORS['alice']}"}
    response = await edge.client.post(f"/api/v1/approvals/{approval.id}/approve", headers=alice)
    assert response.status == 409
    assert "resolved" in (await response.json())["error"]


async def test_an_empty_filter_is_refused_as_the_runs_api_refuses_it(make_edge: MakeEdge) -> None:
    # `?rule=` listed every approval (no filter), where /api/v1/runs?rule= is a 400: a script
    # that filled in an unset variable read every approval as the rule's.
    edge = await make_edge()
    await edge.env.pending_run()
    bob = {"Authorization": f"Bearer {OPERATORS['bob']}"}
    for name in ("state", "rule", "run", "since", "limit"):
        for value in ("", "%20"):
            response = await edge.client.get(f"/api/v1/approvals?{name}={value}", headers=bob)
            assert response.status == 400, (name, value)
            assert (await response.json())["parameter"] == name
    for path, headers in (("/api/v1/approvals", bob), ("/api/v1/runs", OPERATOR)):
        response = await edge.client.get(f"{path}?rule=", headers=headers)
        assert (response.status, await response.json()) == (
            400,
            {"error": "rule must not be empty", "parameter": "rule"},
        ), path


async def test_cli_lists_approves_and_rejects_as_the_operator(
    make_edge: MakeEdge, tmp_path: Path
) -> None:
    edge = await make_edge()
    _, first = await edge.env.pending_run("api")
    await edge.env.harness.deliver(poke_labels("web"))
    second = next(a for a in await edge.env.desk.store.list_approvals() if a.id != first.id)
    alice = tmp_path / "alice-token"
    alice.write_text(OPERATORS["alice"] + "\n")
    carol = tmp_path / "carol-token"
    carol.write_text(OPERATORS["carol"])

    def cli(*args: str, token: Path | None = alice) -> Result:
        env = {"REMEDIATOR_OPERATOR_TOKEN_FILE": str(token)} if token else {}
        return CliRunner().invoke(main, ["approvals", *args, "--url", edge.base], env=env)

    # The command runs its own event loop, so it runs in a thread while this loop serves.
    listed = await asyncio.to_thread(cli, "list", "--state", "pending")
    assert listed.exit_code == 0, listed.output
    assert first.id in listed.stdout
    assert second.id in listed.stdout
    as_json = await asyncio.to_thread(cli, "list", "--json")
    assert {a["id"] for a in json.loads(as_json.stdout)["approvals"]} == {first.id, second.id}

    refused = await asyncio.to_thread(cli, "approve", first.id, token=carol)
    assert refused.exit_code == 1
    assert "HTTP 403" in refused.stderr
    missing = await asyncio.to_thread(cli, "approve", first.id, token=None)
    assert missing.exit_code == 1
    assert "HTTP 401" in missing.stderr

    approved = await asyncio.to_thread(cli, "approve", first.id, "--reason", "looks right")
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.startswith("approved by alice")
    rejected = await asyncio.to_thread(cli, "reject", second.id, "--reason", "not this one")
    assert rejected.exit_code == 0, rejected.output
    assert rejected.stdout.startswith("rejected by alice")
    again = await asyncio.to_thread(cli, "approve", first.id)
    assert again.exit_code == 1
    assert "HTTP 409" in again.stderr


async def test_cli_an_approval_id_that_is_not_one_decides_nothing(
    make_edge: MakeEdge, tmp_path: Path
) -> None:
    """The id goes into the request's path. `reject ID/approve#` posted to ID/approve (the
    fragment cut the rest) and approved ID; `approve ID` with a byte that is not UTF-8 after it
    (aiohttp dropped it) approved ID. Now each is a usage error naming the argument, exit 2."""
    edge = await make_edge()
    _, pending = await edge.env.pending_run("api")
    alice = tmp_path / "alice-token"
    alice.write_text(OPERATORS["alice"])
    env = {"REMEDIATOR_OPERATOR_TOKEN_FILE": str(alice)}

    def cli(*args: str) -> Result:
        return CliRunner().invoke(main, ["approvals", *args, "--url", edge.base], env=env)

    for args in (
        ("reject", f"{pending.id}/approve#", "--reason", "not this one"),
        ("approve", pending.id + os.fsdecode(b"\xff")),
        ("approve", f"{pending.id}/../{pending.id}"),
        ("approve", "x" * 2000),
    ):
        result = await asyncio.to_thread(cli, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Invalid value for 'APPROVAL_ID'" in result.stderr, result.stderr
        assert "is not an approval id" in result.stderr, result.stderr
        assert "x" * 100 not in result.stderr
    still = await edge.env.desk.store.get_approval(pending.id)
    assert still is not None
    assert still.state == ApprovalState.PENDING

    # The id as `approvals list` shows it, in either case, decides it.
    approved = await asyncio.to_thread(cli, "approve", pending.id.upper())
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.startswith("approved by alice")
