"""The post-incident report of a scripted storm played through the real pipeline (PostgreSQL,
Redis, the approval desk, a local HTTP peer): the JSON and the Markdown, field by field, and
the metrics the same storm leaves (``tests.support.review`` has the script)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from receiver.review.incidents import key_hash, stamp
from receiver.review.loader import Review, ReviewTooLarge
from receiver.review.markdown import render_markdown
from receiver.review.text import duration_text
from receiver.store import Store
from receiver.telemetry import Metrics
from tests.support.approvals import MakeApprovalEnv
from tests.support.review import HOSTILE_LABEL, STORM_RULES, VERIFIED, Storm, play_storm

RULE = "restart-web"


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


@pytest.fixture
async def storm(approval_env: MakeApprovalEnv) -> tuple[Storm, Review, Metrics]:
    metrics = Metrics()
    env = await approval_env(rules=STORM_RULES, metrics=metrics)
    played = await play_storm(env)
    return played, Review(env.harness.store), metrics


async def _report(storm: Storm, review: Review, **options: Any) -> dict[str, Any]:
    end = storm.started + timedelta(minutes=10)
    return await review.report(storm.started - timedelta(minutes=1), end, **options)


async def test_the_storm_is_one_incident_with_everything_in_it(
    storm: tuple[Storm, Review, Metrics],
) -> None:
    played, review, _ = storm
    report = await _report(played, review)
    runs = played.runs
    assert report["version"] == 1
    assert report["window"]["group_by"] == "gap"
    assert report["window"]["gap_s"] == 1800.0
    [incident] = report["incidents"]
    first = runs["api"].created_at
    assert incident["id"] == f"g-{stamp(first)}-{key_hash(played.group_key)}"
    assert incident["key"] == played.group_key
    assert incident["alertnames"] == ["WebDown"]
    assert incident["by_window"] is False
    assert incident["started_at"] == _iso(first)
    # The last thing that happened: cart's alert resolved 215 s after its run began.
    assert incident["ended_at"] == _iso(runs["cart"].resolved_at)
    assert incident["summary"] == (
        "7 runs on 7 targets: 2 verified, 1 failed, 2 refused, 1 rejected, 1 expired;"
        " 1 rule skip; 1 alert matched no rule"
    )
    assert incident["outcomes"] == {
        "verified": 2,
        "failed": 1,
        "refused": 2,
        "rejected": 1,
        "expired": 1,
    }
    # 95 s and 215 s: the median between them, p90 interpolated (95 + 0.9 * 120).
    assert incident["time_to_resolve"] == {"count": 2, "median_s": 155.0, "p90_s": 203.0}

    alerts = {a["labels"]["deployment"]: a for a in incident["alerts"]}
    assert list(alerts) == [
        "api", "cart", "checkout", "search", "shipping", "ads", "mail", "dns", "batch"
    ]  # fmt: skip
    # What became of each alert is its run's outcome: "acted" only where a step ran (shipping
    # acted, then its verification failed).
    assert {name: (a["status"], a["refused_by"]) for name, a in alerts.items()} == {
        **{n: ("acted", None) for n in ("api", "cart", "shipping")},
        "checkout": ("rejected", None),
        "search": ("expired", None),
        "ads": ("refused", "rate"),
        "mail": ("refused", "rate"),
        "dns": ("skipped", None),
        "batch": ("unmatched", None),
    }
    assert alerts["api"]["labels"]["team"] == HOSTILE_LABEL
    assert alerts["api"]["rules"] == [RULE]
    assert alerts["api"]["resolved_at"] == _iso(runs["api"].resolved_at)
    assert alerts["api"]["summary"] == "api answers no request"
    assert alerts["checkout"]["resolved_at"] is None

    by_target = {r["target"]: r for r in incident["runs"]}
    assert {t: (r["outcome"], r["category"]) for t, r in by_target.items()} == {
        "Deployment/shop/api": (VERIFIED, "verified"),
        "Deployment/shop/cart": (VERIFIED, "verified"),
        "Deployment/shop/checkout": ("rejected", "rejected"),
        "Deployment/shop/search": ("expired", "expired"),
        "Deployment/shop/shipping": ("failed", "failed"),
        "Deployment/shop/ads": ("refused", "refused"),
        "Deployment/shop/mail": ("refused", "refused"),
    }
    api = by_target["Deployment/shop/api"]
    assert (api["id"], api["rule"], api["dry_run"], api["time_to_resolve_s"]) == (
        runs["api"].id,
        RULE,
        False,
        95.0,
    )
    assert by_target["Deployment/shop/cart"]["time_to_resolve_s"] == 215.0
    assert by_target["Deployment/shop/checkout"]["error"] == "rejected by bob: not during the sale"
    shipping = by_target["Deployment/shop/shipping"]
    assert shipping["error"] == runs["shipping"].error
    assert "deadline" in shipping["error"]

    assert [
        (a["target"], a["action"], a["outcome"], a["before"], a["after"], a["dry_run"])
        for a in incident["actions"]
    ] == [
        (f"Deployment/shop/{n}", "test.poke", "ok", {"value": 0}, {"value": 1}, False)
        for n in ("api", "cart", "shipping")
    ]

    approvals = {a["target"].rsplit("/", 1)[1]: a for a in incident["approvals"]}
    decisions = {
        n: (a["state"], a["decision"], a["decided_by"], a["reason"]) for n, a in approvals.items()
    }
    assert decisions == {
        "api": ("approved", "granted", "alice", None),
        "cart": ("approved", "granted", "bob", "go"),
        "checkout": ("rejected", "rejected", "bob", "not during the sale"),
        "search": ("expired", "expired", None, None),
        "shipping": ("approved", "granted", "alice", None),
    }
    for name, a in approvals.items():
        stored = played.approvals[name]
        assert a["approval_id"] == stored.id
        assert a["requested_at"] == _iso(stored.requested_at)
        assert a["decided_at"] == _iso(stored.decided_at)
        assert a["channel"] == (None if name == "search" else "api")
        assert a["waited_s"] == pytest.approx(
            (stored.decided_at - stored.requested_at).total_seconds()  # type: ignore[operator]
        )

    refusals = incident["refusals"]
    assert [(r["target"], r["guard"]) for r in refusals] == [
        ("Deployment/shop/ads", "rate"),
        ("Deployment/shop/mail", "rate"),
    ]
    for r in refusals:
        run = runs[r["target"].rsplit("/", 1)[1]]
        assert r["reason"] == run.refusal_reason
        assert "5 runs of this rule" in r["reason"]
        assert r["retry_at"] is not None
        assert r["retry_at"] == _iso(run.retry_at)

    assert [(n["kind"], n["rule"], n["labels"]["deployment"]) for n in incident["not_done"]] == [
        ("skipped", RULE, "dns"),
        ("unmatched", None, "batch"),
    ]
    skipped, unmatched = incident["not_done"]
    assert skipped["reason"].startswith("invalid target: namespace 'kube-system' is not allowed")
    assert unmatched["reason"] == "no rule matches"

    [row] = report["effectiveness"]
    assert row == {
        "rule": RULE,
        "runs": 7,
        "acted": 3,
        "verified": 2,
        "failed": 1,
        "resolved_before_action": 0,
        "verified_pct": 66.7,
        "failed_pct": 33.3,
        "ttr_count": 2,
        "ttr_median_s": 155.0,
        "ttr_p90_s": 203.0,
        "outcomes": {
            "expired": 1,
            "failed": 1,
            "refused": 2,
            "rejected": 1,
            "verified": 2,
        },
        "refusals": {"rate": 2},
        "approvals": {"expired": 1, "granted": 3, "rejected": 1},
    }


async def test_the_markdown_says_the_same_ready_to_paste(
    storm: tuple[Storm, Review, Metrics],
) -> None:
    played, review, _ = storm
    report = await _report(played, review)
    text = render_markdown(report)
    lines = text.splitlines()
    [incident] = report["incidents"]
    assert f"## Incident {incident['id']}: WebDown" in lines
    assert (
        "- **Outcome:** 7 runs on 7 targets: 2 verified, 1 failed, 2 refused, 1 rejected,"
        " 1 expired; 1 rule skip; 1 alert matched no rule"
    ) in lines
    assert (
        "- **Time to resolve:** median 2m35s, p90 3m23s (2 runs that acted and resolved)" in lines
    )

    def row(*cells: str) -> str:
        return "| " + " | ".join(cells) + " |"

    def when(value: Any) -> str:
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return str(value.strftime("%Y-%m-%d %H:%M:%S UTC"))

    runs = played.runs
    alerts = {a["labels"]["deployment"]: a for a in incident["alerts"]}
    # The label with HTML in it cannot become markup wherever this is pasted.
    assert (
        row(
            "WebDown",
            "deployment=api, namespace=shop, severity=critical,"
            ' team=\\<img src=x onerror="document.title=1"\\>',
            when(alerts["api"]["received_at"]),
            when(runs["api"].resolved_at),
            "acted (restart-web)",
        )
        in lines
    )
    # A refused run did nothing: its alert does not read "acted".
    assert (
        row(
            "WebDown",
            "deployment=ads, namespace=shop, severity=critical",
            when(alerts["ads"]["received_at"]),
            " ",
            "refused by rate (restart-web)",
        )
        in lines
    )
    cart_step = next(s for s in runs["cart"].steps if s.outcome == "ok")
    assert (
        row(
            when(cart_step.finished_at),
            "Deployment/shop/cart",
            "restart-web",
            "test.poke",
            "ok",
            '{"value": 0} → {"value": 1}',
            cart_step.message,
        )
        in lines
    )
    checkout = next(a for a in incident["approvals"] if a["target"].endswith("/checkout"))
    assert (
        row(
            when(checkout["requested_at"]),
            "Deployment/shop/checkout",
            "test.poke",
            "rejected",
            "bob via api",
            when(checkout["decided_at"]),
            duration_text(checkout["waited_s"]),
            "not during the sale",
        )
        in lines
    )
    ads = runs["ads"]
    assert (
        row(
            when(ads.finished_at),
            "Deployment/shop/ads",
            "restart-web",
            "refused by rate",
            ads.refusal_reason or "",
            when(ads.retry_at),
        )
        in lines
    )
    skipped, unmatched = incident["not_done"]
    assert (
        row(
            when(skipped["at"]),
            "WebDown deployment=dns, namespace=kube-system, severity=critical",
            "restart-web",
            "rule skipped",
            skipped["reason"].replace("[", "\\[").replace("]", "\\]"),
            " ",
        )
        in lines
    )
    assert (
        row(
            when(unmatched["at"]),
            "WebDown deployment=batch, namespace=shop, severity=info",
            " ",
            "no rule matched",
            "no rule matches",
            " ",
        )
        in lines
    )
    shipping = runs["shipping"]
    assert row(shipping.id, "Deployment/shop/shipping", "restart-web", "failed", " ",
               shipping.error or "") in lines  # fmt: skip
    effectiveness = row(
        "restart-web", "7", "66.7%", "33.3%", "0", "2m35s", "3m23s", "rate 2", "3/1/1"
    )
    assert effectiveness in lines


async def test_a_window_is_one_incident_and_effectiveness_is_the_same(
    storm: tuple[Storm, Review, Metrics],
) -> None:
    played, review, _ = storm
    by_gap = await _report(played, review)
    by_window = await _report(played, review, by_window=True)
    [incident] = by_window["incidents"]
    assert incident["id"].startswith("w-")
    assert incident["by_window"] is True
    assert by_window["window"] == {**by_gap["window"], "group_by": "window", "gap_s": None}
    assert incident["outcomes"] == by_gap["incidents"][0]["outcomes"]
    assert by_window["effectiveness"] == by_gap["effectiveness"]
    # The incident's id names it: loading it again gives the same incident.
    again = await review.incident(by_gap["incidents"][0]["id"])
    assert again is not None
    assert [r.id for r in again.runs] == [r["id"] for r in by_gap["incidents"][0]["runs"]]


async def test_the_storm_leaves_its_metrics(storm: tuple[Storm, Review, Metrics]) -> None:
    _, _, metrics = storm

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    # Runs by rule and outcome, counted when each ends (after the pipeline, too).
    for outcome, count in (
        (VERIFIED, 2.0),
        ("failed", 1.0),
        ("refused", 2.0),
        ("rejected", 1.0),
        ("expired", 1.0),
    ):
        assert value("remediator_runs_total", rule=RULE, outcome=outcome) == count, outcome
    assert value("remediator_guard_refusals_total", guard="rate") == 2.0
    assert value("remediator_time_to_resolve_seconds_count", rule=RULE) == 2.0
    assert value("remediator_time_to_resolve_seconds_sum", rule=RULE) == 310.0
    assert value("remediator_time_to_resolve_seconds_bucket", rule=RULE, le="120.0") == 1.0
    for state, count in (
        ("requested", 5.0),
        ("approved", 3.0),
        ("rejected", 1.0),
        ("expired", 1.0),
    ):
        assert value("remediator_approvals_total", rule=RULE, state=state) == count, state


async def test_what_the_service_did_meanwhile_is_in_the_incident(
    storm: tuple[Storm, Review, Metrics],
) -> None:
    played, review, _ = storm
    store = review.store
    assert isinstance(store, Store)
    await store.append_audit(
        "guards.pause", data={"reason": "db migration", "until": None, "via": "api", "by": "carol"}
    )
    await store.append_audit(
        "rules.reloaded", data={"count": 1, "digest": "0123456789abcdef", "names": [RULE]}
    )
    report = await _report(played, review)
    [incident] = report["incidents"]
    assert [(s["kind"], s["title"], s["detail"]) for s in incident["service"]] == [
        ("guards.pause", "Remediation paused by carol: db migration", "until resumed"),
        ("rules.reloaded", "Rules reloaded: 1 rules", f"0123456789ab: {RULE}"),
    ]
    lines = render_markdown(report).splitlines()
    assert "### The service meanwhile" in lines
    assert any(
        "| Remediation paused by carol: db migration | until resumed |" in ln for ln in lines
    )


async def test_too_much_to_read_says_what_was_counted_and_what_to_do(
    storm: tuple[Storm, Review, Metrics],
) -> None:
    played, review, _ = storm
    small = Review(review.store, max_runs=1)
    with pytest.raises(ReviewTooLarge) as caught:
        await _report(played, small)
    message = str(caught.value)
    assert message.startswith("more than 1 runs to read at once")
    assert "group_by=window" in message
    assert "remediator report --window" in message
