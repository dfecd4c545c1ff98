"""An alert dropped as a duplicate although its labels differ from the copy stored.

Events dedupe on (fingerprint, startsAt, status, refire): that is what makes retries and
re-sends harmless. Alertmanager's fingerprint is a hash of the labels, so a second alert with
the same fingerprint and startsAt and other labels comes from another sender or a forged
payload. It was dropped without a word (``{"accepted":0,"duplicates":1}``, nothing else); it
is still dropped, and now counted and logged (``receiver.store.label_clashes``): once per
notification, at most one line per interval, label names only.

Against a real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import Any

import pytest
from structlog.testing import capture_logs

from receiver.log_limits import Throttle
from receiver.model import Status
from receiver.store import ClashReport, NewEvent, Store
from receiver.telemetry import Metrics

pytestmark = [pytest.mark.postgres]

STARTS = "2026-11-25T10:00:00Z"
LABELS = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "web"}
# The forged copy: another deployment, and a label the first copy lacks, whose value (a
# secret, say) must not reach the log.
FORGED = {"alertname": "HighMemoryUsage", "namespace": "shop", "deployment": "payments"}
SECRET = "hunter2-not-for-logs"


def event(labels: dict[str, str], fingerprint: str = "f1") -> NewEvent:
    return NewEvent(fingerprint=fingerprint, starts_at=STARTS, status=Status.FIRING, labels=labels)


class Clock:
    """The throttle's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _report(store: Store, metrics: Metrics, clock: Clock) -> None:
    """Wire the store's report as the service does, with the throttle's clock the test's."""
    store.label_clashes = ClashReport(metrics.label_clashes, throttle=Throttle(10.0, clock))


def _clashes(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value("remediator_alert_label_clashes_total")
    assert value is not None
    return value


def _warnings(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if "labels differ" in e["event"]]


async def test_a_stored_alerts_copy_with_other_labels_is_counted_and_logged(store: Store) -> None:
    metrics, clock = Metrics(), Clock()
    _report(store, metrics, clock)
    assert await store.insert_events([event(LABELS)]) == (1, 0)
    with capture_logs() as logs:
        # A plain re-send: a duplicate, and nothing to say about it.
        assert await store.insert_events([event(LABELS)]) == (0, 1)
        assert _warnings(logs) == []
        forged = [event({**FORGED, "token": SECRET}), event(LABELS, fingerprint="f2")]
        assert await store.insert_events(forged) == (1, 1)
    assert _clashes(metrics) == 1
    (warning,) = _warnings(logs)
    assert warning["log_level"] == "warning"
    assert warning["alerts"] == 1
    assert (warning["fingerprint"], warning["starts_at"], warning["status"]) == (
        "f1",
        STARTS,
        "firing",
    )
    assert warning["differing_labels"] == ["deployment", "token"]
    assert SECRET not in repr(warning)
    assert "payments" not in repr(warning)
    # The dedupe key is unchanged: the copy stored first is the one kept.
    async with store._pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT labels::text FROM alert_events WHERE fingerprint = 'f1'"
        )
    assert "payments" not in stored


async def test_two_copies_in_one_notification_and_the_log_held_back(store: Store) -> None:
    metrics, clock = Metrics(), Clock()
    _report(store, metrics, clock)
    with capture_logs() as logs:
        # Two alerts of one notification with one key and other labels: one accepted.
        assert await store.insert_events([event(LABELS), event(FORGED)]) == (1, 1)
        # Another notification within the interval: counted, its line held back.
        assert await store.insert_events([event(FORGED), event(FORGED)]) == (0, 2)
        assert _clashes(metrics) == 3
        assert len(_warnings(logs)) == 1
        clock.now += 10.0
        assert await store.insert_events([event(FORGED)]) == (0, 1)
    assert _clashes(metrics) == 4
    first, second = _warnings(logs)
    assert (first["alerts"], first["differing_labels"]) == (1, ["deployment"])
    assert (second["alerts"], second["not_logged_since_last"]) == (1, 1)


async def test_a_store_without_the_services_report_still_logs(store: Store) -> None:
    assert store.label_clashes is None
    await store.insert_events([event(LABELS)])
    with capture_logs() as logs:
        assert await store.insert_events([event(FORGED)]) == (0, 1)
    (warning,) = _warnings(logs)
    assert warning["differing_labels"] == ["deployment"]


async def test_a_failed_comparison_is_logged_and_intake_answers_all_the_same(store: Store) -> None:
    """The comparison is a statement of its own after the insert committed, sent only for a
    batch that had duplicates; its failure loses nothing and fails nothing. Here the insert
    itself breaks its session for the next statement (a statement trigger moving
    ``search_path`` away from alert_events for the session), so the read fails on the server
    as it would with the table gone; new connections are free of it."""
    metrics, clock = Metrics(), Clock()
    _report(store, metrics, clock)
    assert await store.insert_events([event(LABELS)]) == (1, 0)
    async with store._pool.acquire() as conn:
        await conn.execute(
            """
            CREATE FUNCTION test_lose_the_table() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM set_config('search_path', 'nowhere', false);
                RETURN NULL;
            END $$;
            CREATE TRIGGER test_lose_the_table AFTER INSERT ON alert_events
                FOR EACH STATEMENT EXECUTE FUNCTION test_lose_the_table();
            """
        )
    with capture_logs() as logs:
        # New alerts only: no comparison is sent, so none fails.
        assert await store.insert_events([event(LABELS, fingerprint="f3")]) == (1, 0)
        assert [e for e in logs if "could not compare" in e["event"]] == []
        await store._pool.expire_connections()  # the sessions that insert broke
        forged = [event({**FORGED, "token": SECRET}), event(LABELS, fingerprint="f2")]
        assert await store.insert_events(forged) == (1, 1)
    (failed,) = [e for e in logs if "could not compare" in e["event"]]
    assert (failed["log_level"], failed["error"], failed["sqlstate"]) == (
        "warning",
        "UndefinedTableError",
        "42P01",
    )
    assert SECRET not in repr(logs)
    assert _clashes(metrics) == 0
    await store._pool.expire_connections()
    async with store._pool.acquire() as conn:
        stored = await conn.fetchval("SELECT count(*) FROM alert_events")
        await conn.execute("DROP TRIGGER test_lose_the_table ON alert_events")
    assert stored == 3
    # The read works again once the session is left alone.
    assert await store.insert_events([event(FORGED)]) == (0, 1)
    assert _clashes(metrics) == 1


async def test_within_one_batch_the_copy_stored_is_the_one_answered_accepted(
    store: Store,
) -> None:
    """Copies of one key in one group commit: the first (in the batch's order) is answered
    accepted and the later ones duplicates, so the first is the one stored, as when they come
    one after another. The insert's sort on the key alone left the tie to PostgreSQL, which
    stored a later copy for most keys while answering the first accepted."""
    metrics, clock = Metrics(), Clock()
    _report(store, metrics, clock)
    copies, keys = 3, 8
    groups = [
        [event({**LABELS, "copy": str(copy)}, fingerprint=f"k{key}")]
        for copy in range(copies)
        for key in range(keys)
    ]
    # And one notification that carries two copies of one alert.
    groups.append([event({**FORGED, "copy": "0"}, fingerprint="pair"), event(LABELS, "pair")])
    results = await store.insert_event_groups(groups)
    assert results == [(1, 0)] * keys + [(0, 1)] * (keys * (copies - 1)) + [(1, 1)]
    async with store._pool.acquire() as conn:
        rows = await conn.fetch("SELECT fingerprint, labels->>'copy' AS copy FROM alert_events")
    assert sorted((r["fingerprint"], r["copy"]) for r in rows) == sorted(
        [(f"k{key}", "0") for key in range(keys)] + [("pair", "0")]
    )
    # Each later copy is compared with the first, so every one of them counts as a clash.
    assert _clashes(metrics) == keys * (copies - 1) + 1
