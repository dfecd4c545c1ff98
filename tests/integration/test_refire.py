"""Re-fires with the same startsAt, against a real PostgreSQL: which occurrence an event is.

Alertmanager resolves an alert whose source went quiet past its endsAt and, when the source
sends it again (Prometheus keeps startsAt while its rule stays active), fires it again with the
SAME startsAt. Intake numbers the occurrences of an episode (``refire``): a firing received
after the late-delivery window that follows a stored resolution opens the next occurrence; one
received inside it is a late copy of the resolved one (an HA peer, a retry). Resolved copies
are recognised by their endsAt. True duplicates stay duplicates either way.
"""

from __future__ import annotations

from typing import Any

import pytest

from receiver.alertmanager import ZERO_TIME
from receiver.model import Status
from receiver.store import NewEvent, Store
from receiver.store.events import LATE_DELIVERY_WINDOW_S

pytestmark = pytest.mark.postgres

FP = "00aa11bb22cc33dd"
STARTS = "2026-11-30T02:20:00.5Z"
E1 = "2026-11-30T02:40:00Z"
E2 = "2026-11-30T03:10:00Z"


def firing() -> NewEvent:
    return NewEvent(FP, STARTS, Status.FIRING, {"alertname": "QueueBacklog"}, ends_at=ZERO_TIME)


def resolved(ends_at: str) -> NewEvent:
    return NewEvent(FP, STARTS, Status.RESOLVED, {"alertname": "QueueBacklog"}, ends_at=ends_at)


async def received_long_ago(store: Store, seconds: float = LATE_DELIVERY_WINDOW_S + 60) -> None:
    """As if every stored event had arrived ``seconds`` earlier (instead of sleeping)."""
    async with store._pool.acquire() as conn:
        await conn.execute(
            "UPDATE alert_events SET received_at = received_at - make_interval(secs => $1)",
            float(seconds),
        )


async def rows(store: Store) -> list[tuple[Any, ...]]:
    async with store._pool.acquire() as conn:
        found = await conn.fetch(
            "SELECT status, refire, ends_at FROM alert_events WHERE fingerprint = $1 ORDER BY id",
            FP,
        )
    return [tuple(r) for r in found]


async def test_a_refire_after_the_window_is_a_new_occurrence(store: Store) -> None:
    assert await store.insert_events([firing()]) == (1, 0)
    assert await store.insert_events([firing()]) == (0, 1)  # retry / repeat_interval
    assert await store.insert_events([resolved(E1)]) == (1, 0)
    await received_long_ago(store)
    assert await store.insert_events([firing()]) == (1, 0)  # the source sends again
    assert await store.insert_events([firing()]) == (0, 1)  # ... and its copies are duplicates
    assert await store.insert_events([resolved(E2)]) == (1, 0)
    assert await store.insert_events([resolved(E2)]) == (0, 1)
    assert await rows(store) == [
        ("firing", 0, ZERO_TIME),
        ("resolved", 0, E1),
        ("firing", 1, ZERO_TIME),
        ("resolved", 1, E2),
    ]


async def test_a_late_firing_copy_inside_the_window_is_not(store: Store) -> None:
    await store.insert_events([firing()])
    await store.insert_events([resolved(E1)])
    await received_long_ago(store, LATE_DELIVERY_WINDOW_S - 60)
    # An HA peer's firing notification, built before the alert resolved, arrives late.
    assert await store.insert_events([firing()]) == (0, 1)
    assert await rows(store) == [("firing", 0, ZERO_TIME), ("resolved", 0, E1)]


async def test_a_late_firing_we_never_had_is_stored_with_the_resolved_occurrence(
    store: Store,
) -> None:
    # Only the resolved notification reached us, then a peer's late firing: it is stored
    # (nothing accepted is lost) as part of the resolved occurrence, which the engine ignores.
    assert await store.insert_events([resolved(E1)]) == (1, 0)
    assert await store.insert_events([firing()]) == (1, 0)
    assert await rows(store) == [("resolved", 0, E1), ("firing", 0, ZERO_TIME)]


async def test_a_late_resolved_copy_never_closes_the_next_occurrence(store: Store) -> None:
    await store.insert_events([firing()])
    await store.insert_events([resolved(E1)])
    await received_long_ago(store)
    await store.insert_events([firing()])  # refire 1 is open
    # The peer's copy of the FIRST resolution arrives late: same endsAt, so the same one.
    assert await store.insert_events([resolved(E1)]) == (0, 1)
    # A resolution with another endsAt closes the open occurrence.
    assert await store.insert_events([resolved(E2)]) == (1, 0)
    assert [r[:2] for r in await rows(store)] == [
        ("firing", 0),
        ("resolved", 0),
        ("firing", 1),
        ("resolved", 1),
    ]


async def test_a_second_resolution_of_a_resolved_occurrence_is_a_copy(store: Store) -> None:
    # Two HA peers that timed the alert out at slightly different instants (resolve_timeout
    # counts from each one's own receipt): two endsAt, one resolution.
    await store.insert_events([firing()])
    await store.insert_events([resolved(E1)])
    assert await store.insert_events([resolved("2026-11-30T02:40:00.002Z")]) == (0, 1)


async def test_the_window_is_the_stores_setting(store: Store) -> None:
    store.late_delivery_window_s = 0.0
    try:
        await store.insert_events([firing()])
        await store.insert_events([resolved(E1)])
        assert await store.insert_events([firing()]) == (1, 0)
    finally:
        del store.late_delivery_window_s  # back to the class default
    assert [r[:2] for r in await rows(store)][-1] == ("firing", 1)


async def test_copies_of_a_refire_in_one_batch_count_once(store: Store) -> None:
    await store.insert_events([firing()])
    await store.insert_events([resolved(E1)])
    await received_long_ago(store)
    # Two HA peers' copies of the re-fire committed together.
    assert await store.insert_event_groups([[firing()], [firing()]]) == [(1, 0), (0, 1)]


async def test_a_refires_resolution_committed_with_its_firing_closes_it(store: Store) -> None:
    """Two replicas after an outage: one's firing of the re-fire and the other's resolution of
    it land in one commit. The resolution was counted a duplicate of the first one (it did not
    see the firing beside it), so the re-fire's run never closed: it failed not_resolved, and
    its undo never ran."""
    await store.insert_events([firing()])
    await store.insert_events([resolved(E1)])
    await received_long_ago(store)
    assert await store.insert_event_groups([[firing()], [resolved(E2)]]) == [(1, 0), (1, 0)]
    assert await rows(store) == [
        ("firing", 0, ZERO_TIME),
        ("resolved", 0, E1),
        ("firing", 1, ZERO_TIME),
        ("resolved", 1, E2),
    ]


async def test_a_refires_resolution_before_its_late_firing_keeps_that_firing_idle(
    store: Store,
) -> None:
    """The re-fire's resolution arrives first (the firing is a replica's late retry, or the
    alert fired and resolved between two flushes, so only the resolution was sent). It was
    dropped as a copy of the first resolution, and the late firing then opened the occurrence
    and was acted on, with no resolution to come. Received after the window, it is the
    resolution of the next occurrence, and the firing that follows is a late copy of it."""
    await store.insert_events([firing()])
    await store.insert_events([resolved(E1)])
    await received_long_ago(store)
    assert await store.insert_events([resolved(E2)]) == (1, 0)
    assert await store.insert_events([firing()]) == (1, 0)
    assert await rows(store) == [
        ("firing", 0, ZERO_TIME),
        ("resolved", 0, E1),
        ("resolved", 1, E2),
        ("firing", 1, ZERO_TIME),
    ]
