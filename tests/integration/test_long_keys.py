"""Values from Alertmanager with no length limit, end to end on real PostgreSQL and Redis.

A route's ``group_by`` on a long label makes a groupKey of many kilobytes, and a label value or
an alertname can be as long as the sender likes. Intake accepts them (Alertmanager does not
retry a 4xx, so refusing one loses the alert); every index the store keeps over such a value
must then hold it, or the worker fails the event on every attempt (a btree entry holds at most
2704 bytes) and it ends dead-lettered. These alerts must become runs, and the review must still
group them by their group key.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from datetime import timedelta
from typing import Any

from receiver.alertmanager import MAX_FRACTION_DIGITS, Notification, parse_notification
from receiver.model import RunOutcome
from receiver.review.loader import Review
from tests.support.payloads import alert, notification_body
from tests.support.pipeline import MakeHarness

# Matches on severity, so an alert of any alertname starts a run.
RULES = """
rules:
  - name: restart-web
    match: ['severity="warning"']
    target: {kind: Deployment, namespace: "{{ labels.namespace }}", name: "{{ labels.deployment }}"}
    steps:
      - action: kubernetes.rollout_restart
"""


def noise(chars: int) -> str:
    """Text that does not compress (PostgreSQL compresses a long index entry, so repeated
    characters would fit where real keys do not), multi-byte characters included."""
    cjk = "".join(chr(0x4E00 + b * 64 + c) for b, c in itertools.pairwise(os.urandom(chars + 1)))
    return (cjk[: chars // 4] + secrets.token_urlsafe(chars))[:chars]


# 3 KB of text.
LONG_VALUE = noise(2000)
# About 12 KB, as a route grouping by a long label makes a groupKey.
GROUP_LABEL = noise(8000)


def group_key(tail: str) -> str:
    """A groupKey of over 12 KB that only ``tail`` tells apart from another."""
    return '{}/{team="sre"}:{description="' + GROUP_LABEL + tail + '"}'


def labels(deployment: str, **extra: str) -> dict[str, str]:
    return {
        "alertname": "HighMemoryUsage",
        "namespace": "shop",
        "deployment": deployment,
        "severity": "warning",
        "description": LONG_VALUE,
        **extra,
    }


def note(*alerts: dict[str, Any], key: str) -> Notification:
    body = notification_body(*alerts, raw={"groupKey": key})
    return parse_notification(json.dumps(body).encode())


async def test_a_12kb_group_key_and_3kb_labels_become_a_run(make_harness: MakeHarness) -> None:
    h = await make_harness(RULES)
    key = group_key("a")
    assert len(key.encode()) > 12000
    result = await h.intake.accept(note(alert(labels("web")), key=key))
    assert result.accepted == 1
    await h.drain()
    assert await h.store.queue_depth() == 0
    run = await h.only_run()
    assert run.outcome is RunOutcome.DRY_RUN
    assert [s.action for s in run.steps] == ["kubernetes.rollout_restart"]
    [row] = await h.store.review_runs(run_ids=[run.id])
    assert row["group_key"] == key
    assert row["event"]["labels"]["description"] == LONG_VALUE


async def test_a_long_alertname_becomes_a_run_and_filters_the_run_list(
    make_harness: MakeHarness,
) -> None:
    h = await make_harness(RULES)
    name = "HighMemoryUsage" + noise(2000)
    await h.intake.accept(note(alert(labels("web", alertname=name)), key=group_key("a")))
    await h.intake.accept(note(alert(labels("api", alertname=name + "2")), key=group_key("a")))
    await h.drain()
    assert await h.store.queue_depth() == 0
    [run] = await h.runs(alertname=name)
    assert run.target.name == "web"
    assert run.alertname == name
    assert [r.target.name for r in await h.runs(alertname=name + "2")] == ["api"]


async def test_the_review_groups_runs_by_a_long_group_key(make_harness: MakeHarness) -> None:
    h = await make_harness(RULES)
    started = await h.store.server_now()
    first, second = group_key("a"), group_key("b")
    # Alertmanager grows group `first` (re-sending its alerts) while `second` fires beside it.
    await h.intake.accept(note(alert(labels("web")), key=first))
    await h.intake.accept(note(alert(labels("web")), alert(labels("api")), key=first))
    await h.intake.accept(note(alert(labels("cart")), key=second))
    await h.drain()
    assert len(await h.runs()) == 3

    review = Review(h.store)
    report = await review.report(started - timedelta(minutes=1), started + timedelta(minutes=10))
    by_key = {
        i["key"]: sorted(r["target"].rsplit("/", 1)[1] for r in i["runs"])
        for i in report["incidents"]
    }
    assert by_key == {first: ["api", "web"], second: ["cart"]}
    # An incident found again by its id (review_keys_at, then the members of its key).
    for incident in report["incidents"]:
        found = await review.incident(incident["id"])
        assert found is not None
        assert found.key == incident["key"]
    rows = await h.store.review_runs(keys=[second])
    assert [r["target_name"] for r in rows] == ["cart"]


def long_fraction(digits: int) -> str:
    """A startsAt whose fraction is ``digits`` random digits (random: they do not compress)."""
    fraction = "".join(str(b % 10) for b in os.urandom(digits))
    return f"2026-11-30T02:00:00.{fraction}Z"


async def test_a_start_with_thousands_of_fraction_digits_becomes_a_run_with_its_sibling(
    make_harness: MakeHarness,
) -> None:
    # RFC 3339 and Go take a fraction of any length; Alertmanager writes 9 digits. Kept whole,
    # 20,000 random ones did not fit the dedupe index: the notification, its sibling too, was a
    # 500 at every retry. The text is kept to MAX_FRACTION_DIGITS, which tell no more instants
    # apart than Go's nanoseconds do.
    h = await make_harness(RULES)
    starts = long_fraction(20_000)
    long = alert(labels("web"), starts_at=starts)
    sibling = alert(labels("api"))
    result = await h.intake.accept(note(long, sibling, key=group_key("a")))
    assert (result.accepted, result.duplicates) == (2, 0)
    # The same alert again, its fraction the same up to MAX_FRACTION_DIGITS: a duplicate.
    again = alert(labels("web"), starts_at=starts[: 20 + MAX_FRACTION_DIGITS] + "0" * 99 + "Z")
    result = await h.intake.accept(note(again, key=group_key("a")))
    assert (result.accepted, result.duplicates) == (0, 1)
    await h.drain()
    assert await h.store.queue_depth() == 0
    runs = {run.target.name: run for run in await h.runs()}
    assert sorted(runs) == ["api", "web"]
    assert runs["web"].starts_at == starts[: 20 + MAX_FRACTION_DIGITS] + "Z"
