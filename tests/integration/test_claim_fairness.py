"""The event claim serves alert names in turn (receiver/store/claims.py): an alert arriving
during a storm of another alert name is in the next claim, successive claims rotate through
more alert names than one claim takes, and each alert's own events keep their order."""

from __future__ import annotations

from receiver.model import Status
from receiver.store import Store, next_lane
from receiver.store.claims import LANES
from tests.support.events import new_event


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
        assert await store.complete_event(c.event.id, "w")
    rest = await store.claim_events("w", 60, 30)
    quiet = [c for c in rest if c.event.alertname == "Quiet"]
    assert {c.event.status for c in quiet} == {Status.RESOLVED}
    assert len(rest) == 46 + 2
