"""A scripted incident for the review's tests, played through the real pipeline (PostgreSQL,
Redis, the approval desk and the local HTTP peer of ``tests.support.approvals``).

The storm: ``WebDown`` fires for nine Deployments of one alert group, one notification after
another as Alertmanager grows the group (each re-sending the alerts before it):

    api, cart         approved (alice, bob): poked, then the alert resolves 95 s and 215 s
                      after the run began: verified
    checkout          rejected by bob ("not during the sale")
    search            nobody decides: the approval expires
    shipping          approved (alice): poked, the alert does not resolve: verification fails
    ads, mail         refused by the rate guard (5 runs per hour)
    dns (kube-system) the rule is skipped: the namespace is denied
    batch (severity info) matches no rule

The api alert carries a label with HTML in it, and the unmatched one an annotation whose
runbook link is ``javascript:``: the pages must show both as text and link neither.
Time passing (an approval's expiry, a verification deadline) is the jobs' due time and the
deadline moved into the past in the database, as the approval tests do: no sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from receiver.approvals.policy import ApproverPolicy, Identity
from receiver.approvals.state import Channel, Decision, Origin
from receiver.model import ApprovalRecord, RunOutcome
from receiver.store import RunRecord
from tests.support.approvals import ApprovalEnv
from tests.support.payloads import alert, notification

__all__ = [
    "HOSTILE_LABEL",
    "HOSTILE_RUNBOOK",
    "STORM_RULES",
    "VERIFIED",
    "Storm",
    "play_storm",
]

STORM_RULES = """
rules:
  - name: restart-web
    description: Poke a web Deployment that stopped answering.
    match: ['alertname="WebDown"', 'severity="critical"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: test.poke
    verify: {resolved_within: 10m}
    guards: {max_runs: {count: 5, per: 1h}}
"""

# A run whose alert resolved in time: "resolved" until issue 10 named it "verified". The review
# reads both as verified; the tests name whichever this tree stores.
VERIFIED = "verified" if "verified" in {o.value for o in RunOutcome} else "resolved"

HOSTILE_LABEL = '<img src=x onerror="document.title=1">'
HOSTILE_RUNBOOK = "javascript:document.title='pwned'"
RUNBOOK = "https://runbooks.example/web-down"
# In the order they fire.
TARGETS = ("api", "cart", "checkout", "search", "shipping", "ads", "mail", "dns", "batch")
ALICE = Identity("alice", "operator-token", "alice")
BOB = Identity("bob", "operator-token", "bob")
API = Origin(Channel.API, "10.0.0.7", "remediator-cli")
TTR = {"api": 95.0, "cart": 215.0}


def storm_labels(name: str) -> dict[str, str]:
    labels = {"alertname": "WebDown", "namespace": "shop", "deployment": name}
    labels["severity"] = "info" if name == "batch" else "critical"
    if name == "dns":
        labels["namespace"] = "kube-system"
    if name == "api":
        labels["team"] = HOSTILE_LABEL
    return labels


def _alert(name: str, *, status: str = "firing", ends_at: str | None = None) -> dict[str, Any]:
    annotations = {"summary": f"{name} answers no request", "runbook_url": RUNBOOK}
    if name == "batch":
        annotations["runbook_url"] = HOSTILE_RUNBOOK
    return alert(storm_labels(name), status=status, ends_at=ends_at, annotations=annotations)


@dataclass
class Storm:
    """What the script left: the runs by target, the approvals by target, when it began."""

    started: datetime
    runs: dict[str, RunRecord] = field(default_factory=dict)
    approvals: dict[str, ApprovalRecord] = field(default_factory=dict)

    @property
    def group_key(self) -> str:
        return '{}/{team="sre"}:{alertname="WebDown"}'


async def _time_passes(env: ApprovalEnv, sql: str, *args: Any) -> None:
    async with env.harness.store._tx() as conn:
        await conn.execute(sql, *args)
        await conn.execute(
            "UPDATE jobs SET not_before = now() WHERE run_id = $1::uuid AND state = 'pending'",
            args[-1],
        )


async def play_storm(env: ApprovalEnv) -> Storm:
    """Play the storm (module docstring) through ``env``; returns what it left."""
    harness, desk, store = env.harness, env.desk, env.harness.store
    desk.policy = ApproverPolicy.of(by_rule={"restart-web": ["alice", "bob"]})
    storm = Storm(started=await store.server_now())
    for i in range(len(TARGETS)):
        await harness.intake.accept(notification(*(_alert(n) for n in TARGETS[: i + 1])))
        await harness.drain()
    by_target = {r.target.name: r for r in await harness.runs()}
    assert sorted(by_target) == sorted(TARGETS[:7]), sorted(by_target)
    for name in TARGETS[:5]:
        approval = await store.latest_approval(by_target[name].id, 0)
        assert approval is not None, name
        storm.approvals[name] = approval

    async def resolve(name: str) -> None:
        run = await store.get_run(by_target[name].id)
        assert run is not None
        ends = (run.created_at + timedelta(seconds=TTR[name])).astimezone(UTC)
        ends_at = ends.isoformat().replace("+00:00", "Z")
        await harness.intake.accept(notification(_alert(name, status="resolved", ends_at=ends_at)))
        await harness.drain()

    # Each Deployment has its own state: the peer's counter is what its preview was bound to
    # (0) when its step runs, so no approved plan is superseded by another target's change.
    await desk.decide(storm.approvals["api"].id, Decision.APPROVE, ALICE, API)
    await harness.drain()
    await resolve("api")
    env.peer.value = 0
    await desk.decide(storm.approvals["cart"].id, Decision.APPROVE, BOB, API, reason="go")
    await harness.drain()
    await resolve("cart")
    await desk.decide(
        storm.approvals["checkout"].id, Decision.REJECT, BOB, API, reason="not during the sale"
    )
    await harness.drain()
    await _time_passes(
        env,
        "UPDATE approvals SET expires_at = now() - interval '1 second' WHERE run_id = $1::uuid",
        by_target["search"].id,
    )
    await harness.drain()
    env.peer.value = 0
    await desk.decide(storm.approvals["shipping"].id, Decision.APPROVE, ALICE, API)
    await harness.drain()
    await _time_passes(
        env,
        "UPDATE runs SET verify_deadline = now() - interval '1 second' WHERE id = $1::uuid",
        by_target["shipping"].id,
    )
    await harness.drain()
    assert await store.queue_depth() == 0
    for name, row in by_target.items():
        run = await store.get_run(row.id)
        assert run is not None
        storm.runs[name] = run
    for name, approval in storm.approvals.items():
        decided = await store.get_approval(approval.id)
        assert decided is not None
        storm.approvals[name] = decided
    return storm
