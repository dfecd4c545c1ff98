"""Every decision lands in the audit chain where it happens: a guard that passed, a rule skipped
for an alert, a notification, a rules reload, how the service started; and retention prunes
events and jobs, never an audit row (the review still shows the alert of a pruned event)."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from pydantic import SecretStr

from receiver.approvals.policy import Identity, rules_not_loaded
from receiver.approvals.state import Channel, Decision, Origin
from receiver.config import Settings, load_settings
from receiver.model import Skip
from receiver.review.loader import Review
from receiver.rules.loader import RuleHolder
from receiver.startup import RuleReloads, configuration_record
from receiver.store import Store
from receiver.telemetry import Metrics
from remediations.registry import default_registry
from tests.support.approvals import MakeApprovalEnv
from tests.support.pipeline import MakeHarness
from tests.support.polling import eventually
from tests.support.review import HOSTILE_LABEL, STORM_RULES, play_storm
from tests.support.served import SAMPLE, ServeFactory, cli, env_for, stop

RESTART_RULES = """
rules:
  - name: restart
    match: ['alertname="HighMemoryUsage"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
    guards: {cooldown: 15m}
"""


async def _audit(store: Store, kind: str | None = None) -> list[dict[str, Any]]:
    rows = [row async for row in store.export_audit()]
    return [r for r in rows if kind is None or r["kind"] == kind]


async def test_a_guard_decision_that_passed_is_recorded_with_the_guards_asked(
    make_harness: MakeHarness,
) -> None:
    harness = await make_harness(RESTART_RULES)
    labels = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
    await harness.deliver(labels)
    run = await harness.only_run()
    [admitted] = await _audit(harness.store, "run.admitted")
    assert admitted["run_id"] == run.id
    # In the order they were asked. The rule has a cooldown and no rate limit; whether the
    # disruption budget is asked depends on whether the step would change anything.
    data = admitted["data"]
    assert (data["phase"], data["fence"]) == ("run", 1)
    assert data["guards"][:3] == ["pause", "namespace", "cooldown"]
    assert data["guards"][-2:] == ["breaker", "lock"]
    assert set(data["guards"]) <= {"pause", "namespace", "cooldown", "budget", "breaker", "lock"}
    trail = [
        (r["kind"], r["data"].get("outcome"))
        for r in await _audit(harness.store)
        if r["run_id"] == run.id
    ]
    assert trail == [
        ("run.created", "pending"),
        ("step", "pending"),  # planned
        ("run.admitted", None),
        ("run.outcome", "running"),
        ("step", "dry_run"),
        ("run.outcome", "dry_run"),
    ]


async def test_a_rule_matched_and_skipped_is_recorded_once(make_harness: MakeHarness) -> None:
    harness = await make_harness(RESTART_RULES)
    await harness.deliver(
        {"alertname": "HighMemoryUsage", "namespace": "kube-system", "deployment": "dns"}
    )
    [skipped] = await _audit(harness.store, "event.skipped")
    assert skipped["data"]["alertname"] == "HighMemoryUsage"
    [(rule, reason)] = [(s["rule"], s["reason"]) for s in skipped["data"]["skips"]]
    assert rule == "restart"
    assert reason.startswith("invalid target: namespace 'kube-system' is not allowed")
    # A retry records the same skips: no second row.
    event_id = skipped["data"]["event_id"]
    await harness.store.record_skips(event_id, [Skip(reason, rule)])
    assert len(await _audit(harness.store, "event.skipped")) == 1
    # Reasons about the event as a whole (a catch-all feed has one per alert) are not audited.
    await harness.store.record_skips(event_id, [Skip("no rule matches")])
    assert len(await _audit(harness.store, "event.skipped")) == 1


async def test_notifications_are_recorded(approval_env: MakeApprovalEnv) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    [sent] = await _audit(env.harness.store, "notification.sent")
    assert sent["run_id"] == run.id
    assert sent["data"] == {
        "notice": "approval requested",
        "channel": "ops",
        "approval_id": approval.id,
        "step": 0,
        "action": "test.poke",
    }
    assert env.peer.kinds() == ["approval.requested"]


async def test_a_rules_reload_is_recorded(store: Store, tmp_path: Path) -> None:
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(RESTART_RULES)
    holder = RuleHolder(rules_dir, default_registry(), Settings().namespace_policy())
    reloads = RuleReloads(
        holder, structlog.get_logger("test"), store.append_audit, asyncio.get_running_loop()
    )
    first = holder.current.digest
    (rules_dir / "rules.yaml").write_text(RESTART_RULES.replace("name: restart", "name: bounce"))
    # The watcher reloads in a thread: the row is written on the loop all the same.
    await asyncio.to_thread(lambda: reloads(holder.reload()))
    await reloads.drain()
    (rules_dir / "rules.yaml").write_text("rules: [{name: broken}]")
    reloads(holder.reload())
    await reloads.drain()
    reloaded, failed = await _audit(store)
    assert reloaded["kind"] == "rules.reloaded"
    assert reloaded["data"]["names"] == ["bounce"]
    assert reloaded["data"]["digest"] != first
    assert failed["kind"] == "rules.reload_failed"
    assert failed["data"]["errors"]
    assert "rules.yaml" in failed["data"]["errors"][0]
    assert failed["data"]["kept"]["names"] == ["bounce"]


async def test_a_failed_reload_shows_in_the_metrics_and_an_orphaned_approver_list_fails_it(
    store: Store, tmp_path: Path
) -> None:
    """A monitor can tell a service that runs on older rules (as Prometheus' own
    *_config_last_reload_successful tells); a reload that renames a rule the approvers list by
    name is such a failed reload: the rules in force stay, so the rule's narrow list still
    decides (accepted, the wider by_risk list decided it, and the next start refused)."""
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(RESTART_RULES)
    holder = RuleHolder(rules_dir, default_registry(), Settings().namespace_policy())
    holder.check = lambda rules: rules_not_loaded(["restart"], (r.name for r in rules.rules))
    metrics = Metrics()
    ticks = iter([1000.0, 2000.0, 3000.0, 4000.0])
    reloads = RuleReloads(
        holder,
        structlog.get_logger("test"),
        store.append_audit,
        asyncio.get_running_loop(),
        metrics=metrics,
        clock=lambda: next(ticks),
    )

    def gauges() -> tuple[float, float]:
        text = metrics.render()[0].decode()
        found = dict(
            line.split(" ")
            for line in text.splitlines()
            if line.startswith("remediator_rules_last_reload")
        )
        return (
            float(found["remediator_rules_last_reload_successful"]),
            float(found["remediator_rules_last_reload_success_timestamp_seconds"]),
        )

    assert gauges() == (1.0, 1000.0)
    (rules_dir / "rules.yaml").write_text("rules: [{name: broken}]")
    reloads(holder.reload())
    assert gauges() == (0.0, 1000.0)
    (rules_dir / "rules.yaml").write_text(RESTART_RULES.replace("name: restart", "name: bounce"))
    reloads(holder.reload())
    assert gauges() == (0.0, 1000.0)
    assert [r.name for r in holder.current.rules] == ["restart"]
    assert "by_rule names 'restart'" in str(holder.last_errors[0])
    (rules_dir / "rules.yaml").write_text(RESTART_RULES.replace("name: restart", "name: restart"))
    (rules_dir / "more.yaml").write_text(RESTART_RULES.replace("name: restart", "name: bounce"))
    reloads(holder.reload())
    assert gauges() == (1.0, 4000.0)
    await reloads.drain()
    failed = [row for row in await _audit(store) if row["kind"] == "rules.reload_failed"]
    assert "by_rule names 'restart'" in failed[-1]["data"]["errors"][0]


def test_the_start_up_record_keeps_inline_header_values_out(tmp_path: Path) -> None:
    # A bare token (a JWT, a GitHub token) passes every check of what may be written inline;
    # the record keeps the header's name only.
    config = tmp_path / "config.yaml"
    config.write_text(
        "http:\n  endpoints:\n    sink:\n      url: https://sink.internal/x\n"
        "      headers: {X-Custom: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.SIGSECRETJWT,"
        " X-Env: prod}\n"
    )
    settings = load_settings(config, {})
    holder_dir = Path(__file__).resolve().parents[2] / "rules"
    holder = RuleHolder(holder_dir, default_registry(), settings.namespace_policy())
    record = configuration_record(
        settings, holder, dry_run=True, live=[], embedded=False, worker="w-1"
    )
    assert "SIGSECRETJWT" not in json.dumps(record)
    sink = record["settings"]["http_endpoints"]["sink"]
    assert sink["headers"] == {"X-Custom": "***", "X-Env": "***"}
    assert sink["url"] == "https://sink.internal"


def test_the_start_up_record_holds_no_secret() -> None:
    settings = Settings(
        webhook_token=SecretStr("webhook-secret-value"),
        operator_tokens={"alice": SecretStr("alice-secret-value-123")},
        database_url=SecretStr("postgresql://u:db-secret@db/remediator"),
        redis_url=SecretStr("redis://:redis-secret@redis:6379/0"),
    )
    holder_dir = Path(__file__).resolve().parents[2] / "rules"
    holder = RuleHolder(holder_dir, default_registry(), settings.namespace_policy())
    record = configuration_record(
        settings, holder, dry_run=True, live=[], embedded=False, worker="w-1"
    )
    text = json.dumps(record)
    for secret in ("webhook-secret-value", "alice-secret-value", "db-secret", "redis-secret"):
        assert secret not in text
    assert record["settings"]["operator_tokens"] == ["alice"]
    assert record["settings"]["webhook_token"] == "**********"
    assert record["settings"]["budget_count"] == 10
    assert record["rules"]["count"] == len(holder.current)
    assert record["dry_run"] is True


async def test_retention_prunes_events_never_audit_rows(approval_env: MakeApprovalEnv) -> None:
    env = await approval_env(rules=STORM_RULES)
    storm = await play_storm(env)
    store = env.harness.store
    before = await _audit(store)
    assert await store.prune_events(0.0) > 0
    await store.prune_jobs(0.0)
    async with store._tx() as conn:
        # Kept: the events of the runs a job will still take up (verifying ones; not a
        # finish_end job's, which never reads its alert) ...
        kept = await conn.fetchval("SELECT count(*) FROM alert_events")
        assert kept > 0
        assert kept == await conn.fetchval(
            """SELECT count(DISTINCT r.event_id) FROM jobs j JOIN runs r ON r.id = j.run_id
               WHERE j.state <> 'done' AND j.kind <> 'finish_end'"""
        )
        # ... until those jobs are done.
        await conn.execute(
            """UPDATE jobs SET state = 'done', done_at = now(), lease_owner = NULL,
                               lease_until = NULL
               WHERE state <> 'done'"""
        )
    assert await store.prune_events(0.0) == kept
    await store.prune_jobs(0.0)
    async with store._tx() as conn:
        assert await conn.fetchval("SELECT count(*) FROM alert_events") == 0
    assert await _audit(store) == before
    check = await store.verify_audit()
    assert check.ok
    assert check.checked == len(before)
    # The event is gone; the run still shows the alert as it fired, from its audit row.
    run = await Review(store).run(storm.runs["api"].id)
    assert run is not None
    assert run.alert.labels["team"] == HOSTILE_LABEL
    assert run.alert.annotations["summary"] == "api answers no request"
    assert run.group_key == storm.group_key


async def _exported(data_dir: Path) -> list[dict[str, Any]]:
    code, out, err = await cli(env_for(data_dir), "audit", "export")
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


async def test_the_service_records_how_it_started_reloads_and_stops(
    serve: ServeFactory, embedded_dir: Path
) -> None:
    served = serve()
    started = [r for r in await _exported(embedded_dir) if r["kind"] == "service.started"]
    assert len(started) == 1
    data = started[0]["data"]
    assert data["settings"]["operator_tokens"] == ["local"]
    assert data["dry_run"] is False  # auto: steps run dry where their system is missing
    assert data["live"] == []
    assert data["mode"].startswith("dry-run (nothing is changed)")
    assert data["embedded"] is True
    assert data["rules"]["count"] > 0
    text = json.dumps(started)
    assert served.token not in text
    assert served.operator not in text

    headers = {"Authorization": f"Bearer {served.token}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{served.url}/api/v1/alerts", data=SAMPLE.read_bytes(), headers=headers) as r,
    ):
        assert r.status == 200

    async def report() -> dict[str, Any]:
        code, out, err = await cli(
            env_for(embedded_dir), "report", "--since", "1h", "--format", "json"
        )
        assert code == 0, err
        data: dict[str, Any] = json.loads(out)
        return data

    found = await eventually(report, lambda r: bool(r["incidents"]))
    assert found["incidents"][0]["alertnames"] == ["HighMemoryUsage"]

    served.proc.send_signal(signal.SIGHUP)

    async def kinds() -> list[str]:
        return [r["kind"] for r in await _exported(embedded_dir)]

    await eventually(kinds, lambda k: "rules.reloaded" in k)
    assert stop(served) == 0
    assert (await kinds())[-1] == "service.stopped"
    code, _, err = await cli(env_for(embedded_dir), "audit", "verify")
    assert code == 0, err


async def test_a_step_an_approver_rejected_is_recorded_as_a_step(
    approval_env: MakeApprovalEnv,
) -> None:
    env = await approval_env()
    run, approval = await env.pending_run()
    bob = Identity("bob", "operator-token", "bob")
    await env.desk.decide(approval.id, Decision.REJECT, bob, Origin(Channel.API), reason="no")
    trail = [
        (r["kind"], r["data"].get("outcome") or r["data"].get("state"))
        for r in await _audit(env.harness.store)
        if r["run_id"] == run.id
    ]
    assert trail[-4:] == [
        ("step", "rejected"),
        ("run.outcome", "rejected"),
        ("approval.rejected", "rejected"),
        ("notification.sent", None),
    ]
