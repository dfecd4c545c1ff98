"""Rule test files, pure: what a timeline plays, the notifications it sends (what
Alertmanager would send) and the facts its fixtures answer with."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from receiver.alertmanager import ZERO_TIME
from receiver.facts import FactKind, Rollout
from receiver.fingerprints import fingerprint
from receiver.ruletest.notifications import AlertTrack, PlayError, notification_for
from receiver.ruletest.sim import FixtureFacts
from receiver.ruletest.spec import AlertSpec, EntrySpec, FactsSpec, FixtureSpec
from remediations.base import ActionError
from remediations.targets import Target
from tests.support.ruletest_texts import ALERTS, _one_test, errors_of

# -- notifications ---------------------------------------------------------------------------
START = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = AlertSpec(labels={"alertname": "Mem", "pod": "p"}, annotations={"summary": "s"})


def entry(kind: str, **extra: object) -> EntrySpec:
    return EntrySpec.model_validate({"at": 0, kind: "mem", **extra})


def test_each_kind_of_notification_is_what_alertmanager_would_send() -> None:
    track = AlertTrack.of("mem", SPEC)
    assert track.fingerprint == fingerprint(SPEC.labels)
    first = track.next_alert("firing", entry("firing"), START + timedelta(minutes=1), START)
    assert (first["status"], first["startsAt"], first["endsAt"]) == (
        "firing",
        "2026-01-01T00:01:00Z",
        ZERO_TIME,
    )
    assert track.next_alert("repeat", entry("repeat"), START, START) == first
    resolved = track.next_alert("resolved", entry("resolved"), START + timedelta(minutes=9), START)
    assert (resolved["status"], resolved["startsAt"], resolved["endsAt"]) == (
        "resolved",
        "2026-01-01T00:01:00Z",
        "2026-01-01T00:09:00Z",
    )
    assert track.next_alert("ha_duplicate", entry("ha_duplicate"), START, START) == resolved
    late = track.next_alert("ha_duplicate", entry("ha_duplicate", of="firing"), START, START)
    assert late == first
    # A re-fire keeps the episode's startsAt: the same bytes as the first firing.
    assert track.next_alert("refire", entry("refire"), START, START) == first
    # A new firing is a new episode.
    again = track.next_alert("firing", entry("firing"), START + timedelta(hours=1), START)
    assert again["startsAt"] == "2026-01-01T01:00:00Z"
    raw = track.next_alert(
        "firing", entry("firing", starts_at="2025-12-31T23:00:00.5Z"), START, START
    )
    assert raw["startsAt"] == "2025-12-31T23:00:00.5Z"


def test_a_copy_of_nothing_is_a_play_error() -> None:
    track = AlertTrack.of("mem", SPEC)
    with pytest.raises(PlayError, match="nothing was sent for alert 'mem' to copy"):
        track.next_alert("repeat", entry("repeat"), START, START)
    with pytest.raises(PlayError, match="has not fired yet"):
        track.next_alert("resolved", entry("resolved"), START, START)


def test_one_notification_holds_the_alerts_and_their_common_labels() -> None:
    a = AlertTrack.of("a", AlertSpec(labels={"alertname": "Q", "d": "a"}))
    b = AlertTrack.of("b", AlertSpec(labels={"alertname": "Q", "d": "b"}))
    sent = [t.next_alert("firing", entry("firing"), START, START) for t in (a, b)]
    parsed = notification_for(sent)
    assert [x.labels["d"] for x in parsed.alerts] == ["a", "b"]
    assert parsed.commonLabels == {"alertname": "Q"}
    assert parsed.status == "firing"


async def test_fixture_facts_answer_by_kind_and_target_as_the_probes_would() -> None:
    facts = FixtureFacts(START)
    api = Target("Deployment", "shop", "api")
    web = Target("Deployment", "shop", "web")
    facts.apply(
        [
            FixtureSpec.model_validate(
                {
                    "target": "Deployment/shop/api",
                    "facts": {"rollout": {"revision": 7, "created_at": "-10m"}},
                    "steps": {"kubernetes.scale": {"outcome": "refused", "message": "HPA"}},
                }
            ),
            FixtureSpec.model_validate(
                {"target": "Deployment/shop/web", "facts": {"rollout": {"error": "not found"}}}
            ),
        ]
    )
    assert await facts.get("rollout", api) == Rollout(7, "api-7", START - timedelta(minutes=10))
    assert await facts.get("step_outcome:kubernetes.scale", api) == {
        "outcome": "refused",
        "message": "HPA",
    }
    with pytest.raises(ActionError, match="not found"):
        await facts.get("rollout", web)
    assert await facts.get("rollout", Target("Deployment", "shop", "cart")) is None
    later = {"revision": 8, "replicaset": "api-x", "created_at": "2026-01-01T02:00:00Z"}
    facts.apply(
        [FixtureSpec.model_validate({"target": "Deployment/shop/api", "facts": {"rollout": later}})]
    )
    assert await facts.get("rollout", api) == Rollout(8, "api-x", START + timedelta(hours=2))
    pruned = {"revision": 4, "created_at": "-5m", "known": False, "bounded": False}
    facts.apply(
        [
            FixtureSpec.model_validate(
                {"target": "Deployment/shop/api", "facts": {"rollout": pruned}}
            )
        ]
    )
    assert await facts.get("rollout", api) == Rollout(
        4, "api-4", START - timedelta(minutes=5), known=False, bounded=False
    )
    # A new Deployment has nothing to roll back to, implied; another reason is stated.
    new = {"revision": 1, "created_at": "-5m"}
    same = {"revision": 3, "created_at": "-5m", "nothing_to_roll_back": "it runs revision 2"}
    for fact in (new, same):
        facts.apply(
            [
                FixtureSpec.model_validate(
                    {"target": "Deployment/shop/api", "facts": {"rollout": fact}}
                )
            ]
        )
        got = await facts.get("rollout", api)
        assert isinstance(got, Rollout)
        assert got.no_rollback.endswith(
            "revision 1 is its creation, its first release" if fact is new else "revision 2"
        )


def test_every_kind_of_fact_has_its_fixture() -> None:
    assert set(FactsSpec.model_fields) == {str(kind) for kind in FactKind}


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        ({"revision": 3}, "give revision and created_at, or the error the probe met"),
        ({"error": "x", "revision": 3}, "a fact that could not be read has an error and nothing"),
        ({"revision": 0, "created_at": "1m"}, "greater than or equal to 1"),
        ({"revision": 1, "created_at": "yesterday"}, "is not a duration"),
        ({"error": "x", "known": False}, "a fact that could not be read has an error and nothing"),
        ({"revision": 2, "created_at": "-1m", "bounded": False}, "bounded: false only describes"),
        ({"revision": 2, "created_at": "-1m", "known": "no"}, "is text, not a boolean"),
    ],
)
def test_a_fact_fixture_says_what_is_wrong_with_it(
    rollout: dict[str, object], message: str
) -> None:
    body = (
        ALERTS
        + "fixtures: [{target: Deployment/a/b, facts: {rollout: "
        + json.dumps(rollout)
        + "}}]\ntimeline: [{at: 1m, firing: a}]\nexpect: [{no_runs: true}]\n"
    )
    errors = errors_of(_one_test(body))
    assert any(
        e.startswith("t.yaml:5: tests[0].fixtures[0].facts.rollout") and message in e
        for e in errors
    ), errors
    typo = errors_of(_one_test(body.replace("rollout:", "rolout:")))
    assert any("unknown field 'rolout' (did you mean 'rollout'?)" in e for e in typo), typo
