"""What the service itself did during an incident, in the review (``Review._with_service``):
each move placed by when it happened, not when its row was written (a pause recorded late, a
refusal digest written when its window ended: verify-stop27 C6), and refusal digests never
crowding a pause out of the rows read, with a cut said in the report (C7).

Real PostgreSQL, read through the review's public calls (a report, an incident's page).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from receiver.review.incidents import stamp
from receiver.review.loader import Review
from receiver.review.markdown import render_markdown
from receiver.review.timeline import incident_timeline
from receiver.store import OnceEntry, Store
from receiver.store.audit import append_in_tx
from receiver.store.review import SERVICE_LIMIT

pytestmark = pytest.mark.postgres


def _now() -> datetime:
    # Audit rows are stamped by PostgreSQL's own clock (clock_timestamp() at commit), so the
    # incidents are laid out around the real time.
    return datetime.now(UTC)


def _z(at: datetime) -> str:
    # As receiver.refusal_digest writes a window's bounds.
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def digest_data(rule: str, start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "window": f"{rule}:oncall:{int(start.timestamp() * 1000)}",
        "rule": rule,
        "channel": "oncall",
        "start": _z(start),
        "end": _z(end),
        "refused": 3,
        "by_guard": {"rate": 3},
        "targets": 1,
        "examples": [],
        "opener": "run-0",
        "delivered": True,
        "detail": "delivered (HTTP 200)",
    }


PAUSE = {"reason": "stop the storm", "until": None, "via": "api", "by": "carol"}


async def window_report(store: Store, start: datetime, end: datetime) -> dict[str, Any]:
    """The report's one incident: the window [start, end) as a whole."""
    report = await Review(store).report(start, end, by_window=True)
    [incident] = report["incidents"]
    assert isinstance(incident, dict)
    return incident


async def test_a_pause_recorded_late_is_in_the_incident_when_it_happened(store: Store) -> None:
    """Thrown during an incident while PostgreSQL was away, and written by the outbox after
    the incident ended."""
    now = _now()
    start, end = now - timedelta(hours=2), now - timedelta(hours=1)
    occurred = now - timedelta(minutes=90)
    entry = OnceEntry("e1", "guards.pause", {**PAUSE, "entry": "e1"}, occurred, late=True)
    assert await store.append_once([entry]) == ["e1"]

    incident = await window_report(store, start, end)
    (pause,) = incident["service"]
    assert pause["kind"] == "guards.pause"
    assert datetime.fromisoformat(pause["at"]) == occurred
    assert datetime.fromisoformat(pause["recorded_at"]) > end
    assert "recorded late" in pause["detail"]
    assert incident["service_cut"] == []


async def test_a_pause_recorded_late_is_ordered_by_when_it_happened(store: Store) -> None:
    """Written after a reload it came before: the incident and its timeline show it first."""
    now = _now()
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    await store.append_audit("rules.reloaded", data={"count": 1, "digest": "ab", "names": ["r"]})
    occurred = now - timedelta(minutes=10)
    entry = OnceEntry("e1", "guards.pause", {**PAUSE, "entry": "e1"}, occurred, late=True)
    assert await store.append_once([entry]) == ["e1"]
    await store.append_audit("service.started", data={"host": "h", "worker": "w"})

    incident = await window_report(store, start, end)
    kinds = [s["kind"] for s in incident["service"]]
    assert kinds == ["guards.pause", "rules.reloaded", "service.started"]
    whole = await Review(store).incident(f"w-{stamp(start)}-{stamp(end)}")
    assert whole is not None
    titles = [e.title for e in incident_timeline(whole) if e.kind == "service"]
    assert titles == [
        "Remediation paused by carol: stop the storm",
        "Rules reloaded: 1 rules",
        "Service started",
    ]


async def test_a_pause_recorded_late_for_another_time_is_not_in_the_incident(
    store: Store,
) -> None:
    """Written during the incident, but it happened the day before."""
    now = _now()
    yesterday = now - timedelta(days=1)
    entry = OnceEntry("e2", "guards.pause", {**PAUSE, "entry": "e2"}, yesterday, late=True)
    await store.append_once([entry])
    incident = await window_report(store, now - timedelta(hours=1), now + timedelta(hours=1))
    assert incident["service"] == []


async def test_a_refusal_digest_is_in_the_incident_its_window_overlaps(store: Store) -> None:
    """Each digest is written when its window ends, which may be after the incident's end."""
    now = _now()
    start, end = now - timedelta(hours=2), now - timedelta(hours=1)
    windows = {
        "before": (start - timedelta(minutes=10), start - timedelta(minutes=5)),
        "across-the-end": (end - timedelta(minutes=2), end + timedelta(minutes=3)),
        "after": (end + timedelta(minutes=5), end + timedelta(minutes=10)),
    }
    for rule, (opened, ended) in windows.items():
        await store.append_audit("announcements.digest", data=digest_data(rule, opened, ended))
    incident = await window_report(store, start, end)
    [digest] = incident["service"]
    assert digest["kind"] == "announcements.digest"
    assert "3 more refusals of across-the-end" in digest["title"]
    assert datetime.fromisoformat(digest["at"]) == windows["across-the-end"][0]
    assert datetime.fromisoformat(digest["recorded_at"]) > end


async def test_refusal_digests_never_crowd_a_pause_out_and_a_cut_is_said(store: Store) -> None:
    now = _now()
    start, end = now - timedelta(hours=1), now + timedelta(hours=1)
    many = SERVICE_LIMIT + 5
    async with store._pool.acquire() as conn, conn.transaction():
        for i in range(many):
            data = digest_data(f"r{i}", now - timedelta(minutes=6), now - timedelta(minutes=1))
            await append_in_tx(conn, "announcements.digest", None, None, data)
    await store.append_audit("guards.pause", data=PAUSE)

    report = await Review(store).report(start, end, by_window=True)
    [incident] = report["incidents"]
    kinds = [s["kind"] for s in incident["service"]]
    assert kinds.count("guards.pause") == 1
    assert kinds.count("announcements.digest") == SERVICE_LIMIT
    (cut,) = incident["service_cut"]
    assert cut.startswith("5 more announcements.digest rows than the review reads at once (1000")
    assert "narrow the window" in cut
    said = [ln for ln in render_markdown(report).splitlines() if ln.startswith("**Not all")]
    assert len(said) == 1
    assert "5 more announcements" in said[0]
