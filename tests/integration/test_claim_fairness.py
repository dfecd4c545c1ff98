"""The event claim serves alert names in turn (receiver/store/claims.py): an alert arriving
during a storm of another alert name is in the next claim, successive claims rotate through
more alert names than one claim takes, and each alert's own events keep their order."""

from __future__ import annotations

import hashlib

from receiver.model import Status
from receiver.store import Store, next_lane
from receiver.store.claims import LANES
from tests.support.events import new_event


def lane_of(alertname: str) -> str:
    """An alert name's lane, as the claim orders lanes (md5 of the name, in hex)."""
    return hashlib.md5(alertname.encode(), usedforsecurity=False).hexdigest()


async def test_an_alert_arriving_during_a_storm_is_in_the_next_claim(store: Store) -> None:
    storm = [new_event(f"a{i:015x}", alertname="QueueBacklog") for i in range(300)]
    await store.insert_events(storm)
    first = await store.claim_events("w", 4, 30)
    assert {c.event.alertname for c in first} == {"QueueBacklog"}

    await store.insert_events([new_event("b" * 16, alertname="DatabaseConnectionsHigh")])
    cursor = next_lane(first, "")
    again = await store.claim_events("w", 2, 30, after_lane=cursor)
    # First in first out would have taken two more of the storm's 296 waiting events.
    assert "DatabaseConnectionsHigh" in {c.event.alertname for c in again}


async def test_successive_claims_rotate_through_every_alert_name(store: Store) -> None:
    names = [f"Alert{n:02d}" for n in range(LANES + 4)]  # more than one claim walks
    events = [
        new_event(f"{n:02x}{i:014x}", alertname=name)
        for n, name in enumerate(names)
        for i in range(3)
    ]
    await store.insert_events(events)
    cursor, served = "", []
    for _ in names:
        [claim] = await store.claim_events("w", 1, 30, after_lane=cursor)
        cursor = next_lane([claim], cursor)
        served.append(claim.event.alertname)
    # One claim of one event each time, and every alert name served once before any twice.
    assert sorted(served) == names


async def test_one_claim_interleaves_alert_names_and_keeps_each_alerts_order(
    store: Store,
) -> None:
    # Two alerts of one name, each with a firing then a resolved event, and a storm of another.
    await store.insert_events([new_event(f"c{i:015x}", alertname="Storm") for i in range(50)])
    await store.insert_events([new_event(f"d{i:015x}", alertname="Quiet") for i in range(2)])
    await store.insert_events(
        [new_event(f"d{i:015x}", Status.RESOLVED, alertname="Quiet") for i in range(2)]
    )
    claims = await store.claim_events("w", 6, 30)
    by_name = [c.event.alertname for c in claims]
    assert by_name.count("Quiet") == 2
    assert by_name.count("Storm") == 4
    # Interleaved: the first event of each name before the second of either.
    assert set(by_name[:2]) == {"Quiet", "Storm"}
    # Only the firing event of each Quiet alert: its resolved one waits for it.
    assert {c.event.status for c in claims if c.event.alertname == "Quiet"} == {Status.FIRING}
    for c in claims:
        assert await store.complete_event(c.event.id, "w", c.attempts)
    rest = await store.claim_events("w", 60, 30)
    quiet = [c for c in rest if c.event.alertname == "Quiet"]
    assert {c.event.status for c in quiet} == {Status.RESOLVED}
    assert len(rest) == 46 + 2


async def test_lanes_waiting_out_a_backoff_do_not_hide_a_due_lane_behind_them(
    store: Store,
) -> None:
    """After an outage (Redis down: every run's event released with a backoff), more lanes
    than one claim walks hold only events not yet due. A lane after them with a due event
    must still be claimed: a walk of lanes that can give nothing took nothing, left the
    cursor where it was, and the next claim walked the same lanes, until the backoffs ran
    out (minutes, at the default backoff's later attempts)."""
    names = sorted((f"Waiting{n:02d}" for n in range(LANES + 1)), key=lane_of)
    waiting, due = names[:LANES], names[LANES]
    await store.insert_events(
        [new_event(f"{n:02x}{0:014x}", alertname=name) for n, name in enumerate(waiting)]
    )
    taken = await store.claim_events("w1", LANES, 30)
    assert {c.event.alertname for c in taken} == set(waiting)
    for c in taken:
        assert await store.release_event(
            c.event.id, "w1", c.attempts, delay_s=300, error="redis down"
        )
    await store.insert_events([new_event("f" * 16, alertname=due)])

    # Another replica's worker (its cursor at the start), or this one's after a rotation.
    claimed = await store.claim_events("w2", 4, 30)
    assert [c.event.alertname for c in claimed] == [due]


async def test_lanes_whose_alerts_are_in_progress_do_not_hide_a_due_lane_behind_them(
    store: Store,
) -> None:
    """More lanes than one claim walks hold only events waiting for their alert's event in
    progress (a resolved behind its firing, still running on another replica). The claim that
    finds nothing there moves its cursor past them, so the next one reaches the due lane
    behind them instead of walking the same lanes until those runs end."""
    names = sorted((f"Busy{n:02d}" for n in range(LANES + 1)), key=lane_of)
    busy, due = names[:LANES], names[LANES]
    firing = [new_event(f"{n:02x}{0:014x}", alertname=name) for n, name in enumerate(busy)]
    await store.insert_events(firing)
    assert len(await store.claim_events("w1", LANES, 600)) == LANES
    await store.insert_events(
        [
            new_event(f"{n:02x}{0:014x}", Status.RESOLVED, alertname=name)
            for n, name in enumerate(busy)
        ]
    )
    await store.insert_events([new_event("f" * 16, alertname=due)])

    cursor, claimed = "", []
    for _ in range(2):  # the first claim may find nothing; the next must not
        claims = await store.claim_events("w2", 4, 30, after_lane=cursor)
        cursor = next_lane(claims, cursor)
        claimed += [c.event.alertname for c in claims]
    assert claimed == [due]
