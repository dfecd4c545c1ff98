"""The store's alert events against a real PostgreSQL server: the intake rows (deduplicated,
stored as sent) and the queue (claims, order per alert, leases, releases)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from receiver.alertmanager import ZERO_TIME
from receiver.model import Status
from receiver.store import CLAIM_WINDOW, NewEvent, Store
from tests.support.events import new_event
from tests.support.polling import eventually

pytestmark = pytest.mark.postgres


async def test_insert_events_dedupes_on_fingerprint_starts_at_status(store: Store) -> None:
    events = [
        new_event("aaaaaaaaaaaaaaaa"),
        new_event("bbbbbbbbbbbbbbbb"),
        new_event("aaaaaaaaaaaaaaaa", status=Status.RESOLVED),
    ]
    results = [await store.insert_events(events) for _ in range(5)]
    assert results == [(3, 0)] + [(0, 3)] * 4
    # A new episode (new startsAt) of the same alert is a new event.
    refire = new_event("aaaaaaaaaaaaaaaa", starts_at="2024-05-02T00:00:00Z")
    assert await store.insert_events([refire]) == (1, 0)
    assert await store.queue_depth() == 4


async def test_duplicates_inside_one_batch_count_once(store: Store) -> None:
    a, b, c = new_event("a" * 16), new_event("b" * 16), new_event("c" * 16)
    results = await store.insert_event_groups([[a, b], [a], [b, c], [a, a]])
    assert results == [(2, 0), (0, 1), (1, 1), (0, 2)]


async def test_raw_starts_at_and_labels_survive_round_trip(store: Store) -> None:
    await store.insert_events([new_event()])
    [claim] = await store.claim_events("w1", 10, 30)
    event = claim.event
    assert event.starts_at == "2024-05-01T10:00:00.123456789Z"  # nanoseconds kept verbatim
    assert event.alertname == "HighMemoryUsage"
    assert event.labels["deployment"] == "checkout"
    assert event.group_key == '{}:{alertname="HighMemoryUsage"}'
    assert event.received_at is not None
    assert claim.attempts == 1


async def test_the_queue_depth_counts_pending_and_claimed_events_only(store: Store) -> None:
    # Pending and claimed events are in two partial indexes (migration 0028), each counted.
    await store.insert_events([new_event(f"{i:016x}") for i in range(5)])
    claims = await store.claim_events("w1", 2, 30)
    assert len(claims) == 2
    assert await store.queue_depth() == 5
    assert await store.complete_event(claims[0].event.id, "w1", claims[0].attempts)
    assert await store.queue_depth() == 4
    assert await store.release_event(claims[1].event.id, "w1", claims[1].attempts)
    assert await store.queue_depth() == 4


# Text that JSON escapes, or that PostgreSQL's JSON parser reads as an escape: the batch goes
# to the store as one JSON document (insert_event_groups), and each value must come back as sent.
_AWKWARD = ['"quoted"', "back\\slash", "\\u0041 read literally", "line\nbreak\ttab", "\u2028é€😀"]


async def test_every_field_of_an_event_is_stored_as_sent(store: Store) -> None:
    labels = MappingProxyType(
        {"alertname": "Awkward", **{f"l{i}": v for i, v in enumerate(_AWKWARD)}}
    )
    sent = [
        NewEvent(
            fingerprint=f"{i:016x}",
            starts_at=f"2024-05-01T10:00:0{i}Z",
            status=Status.RESOLVED if i % 2 else Status.FIRING,
            labels=labels,
            annotations=MappingProxyType({"summary": text}),
            ends_at="2024-05-01T11:00:00Z" if i % 2 else ZERO_TIME,
            generator_url=f"http://prometheus/graph?g0.expr={text}",
            group_key=f'{{}}:{{alertname="{text}"}}',
            receiver=text,
            settled_reason=text if i == 0 else None,
        )
        for i, text in enumerate(_AWKWARD)
    ]
    assert await store.insert_event_groups([sent[:2], sent[2:]]) == [(2, 0), (3, 0)]
    rows = await store._pool.fetch(
        """SELECT fingerprint, starts_at, status, ends_at, labels::text, annotations::text,
                  generator_url, alertname, group_key, receiver, settled_reason, state
           FROM alert_events ORDER BY fingerprint"""
    )
    assert [
        (
            r["fingerprint"],
            r["starts_at"],
            r["status"],
            r["ends_at"],
            json.loads(r["labels"]),
            json.loads(r["annotations"]),
            r["generator_url"],
            r["alertname"],
            r["group_key"],
            r["receiver"],
            r["settled_reason"],
            r["state"],
        )
        for r in rows
    ] == [
        (
            e.fingerprint,
            e.starts_at,
            str(e.status),
            e.ends_at,
            dict(e.labels),
            dict(e.annotations),
            e.generator_url,
            "Awkward",
            e.group_key,
            e.receiver,
            e.settled_reason,
            "done" if e.settled_reason else "pending",
        )
        for e in sent
    ]


async def test_concurrent_claimers_never_share_an_event(store: Store) -> None:
    await store.insert_events([new_event(f"{i:016x}") for i in range(300)])
    seen: dict[str, list[int]] = {}

    async def claimer(owner: str) -> None:
        mine = seen.setdefault(owner, [])
        while True:
            claims = await store.claim_events(owner, 7, 30)
            if not claims:
                return
            mine.extend(c.event.id for c in claims)

    await asyncio.gather(*(claimer(f"w{i}") for i in range(8)))
    all_ids = [i for ids in seen.values() for i in ids]
    assert len(all_ids) == 300
    assert len(set(all_ids)) == 300
    assert sum(1 for ids in seen.values() if ids) > 1  # they really ran side by side


async def test_events_of_one_alert_are_claimed_in_order(store: Store) -> None:
    await store.insert_events([new_event("f" * 16), new_event("f" * 16, status=Status.RESOLVED)])
    [first] = await store.claim_events("w1", 10, 30)
    assert first.event.status is Status.FIRING
    # The resolved event waits until the firing one is done, whoever asks.
    assert await store.claim_events("w2", 10, 30) == []
    assert await store.complete_event(first.event.id, "w1", first.attempts)
    [second] = await store.claim_events("w2", 10, 30)
    assert second.event.status is Status.RESOLVED


async def test_expired_lease_is_reclaimed_and_old_owner_cannot_settle(store: Store) -> None:
    await store.insert_events([new_event()])
    [claim] = await store.claim_events("crashed", 10, 0.3)
    assert await store.claim_events("other", 10, 30) == []
    # Real time passing is the behaviour here: the lease runs out on the database's clock.
    [again] = await eventually(lambda: store.claim_events("other", 10, 30))
    assert again.event.id == claim.event.id
    assert again.attempts == 2
    assert not await store.complete_event(claim.event.id, "crashed", claim.attempts)
    assert not await store.release_event(claim.event.id, "crashed", claim.attempts, 0)
    assert not await store.extend_lease(claim.event.id, "crashed", claim.attempts, 30)
    assert await store.complete_event(claim.event.id, "other", again.attempts)
    assert await store.queue_depth() == 0


async def test_extend_lease_keeps_the_claim(database_url: str) -> None:
    # On the store's clock (remediator_now()): time passes when the test says so.
    now = [datetime(2031, 5, 4, 12, 0, tzinfo=UTC)]
    store = await Store.connect(database_url, min_size=1, max_size=2, clock=lambda: now[0])
    try:
        await store.insert_events([new_event()])
        [claim] = await store.claim_events("w1", 10, 0.3)
        assert await store.extend_lease(claim.event.id, "w1", claim.attempts, 30)
        # Past the first lease, the extended one still holds.
        now[0] += timedelta(seconds=0.4)
        assert await store.claim_events("w2", 10, 30) == []
        assert await store.extend_lease(claim.event.id, "w1", claim.attempts, 30)  # still its owner
        # An extension is a lease like the first: once it runs out, the event is free again.
        assert await store.extend_lease(claim.event.id, "w1", claim.attempts, 0.1)
        now[0] += timedelta(seconds=0.2)
        [taken] = await store.claim_events("w2", 10, 30)
        assert (taken.event.id, taken.attempts) == (claim.event.id, 2)
        assert not await store.extend_lease(claim.event.id, "w1", claim.attempts, 30)
    finally:
        await store.close()


async def test_release_delays_the_event_and_keeps_the_error(store: Store) -> None:
    await store.insert_events([new_event()])
    [claim] = await store.claim_events("w1", 10, 30)
    released_at = await store.server_now()
    assert await store.release_event(claim.event.id, "w1", claim.attempts, 0.4, "redis down")
    assert await store.claim_events("w1", 10, 30) == []
    # The delay is real time on the database's clock: claimable again only once it passed.
    [again] = await eventually(lambda: store.claim_events("w1", 10, 30))
    assert (await store.server_now() - released_at).total_seconds() >= 0.4
    assert again.last_error == "redis down"
    assert again.attempts == 2


async def test_events_blocked_behind_an_older_event_never_hide_it(store: Store) -> None:
    """Guards down: every firing event is released for a retry while its resolved event is
    already stored. The resolved events are due, blocked by the per-alert order, and sort
    before the firing events; more of them than a claim looks at must not stall the queue."""
    n = CLAIM_WINDOW + 20
    await store.insert_events([new_event(f"{i:016x}") for i in range(n)])
    await store.insert_events([new_event(f"{i:016x}", status=Status.RESOLVED) for i in range(n)])
    first = await store.claim_events("a", n, 30)
    assert len(first) == n
    assert {c.event.status for c in first} == {Status.FIRING}
    for c in first:
        assert await store.release_event(c.event.id, "a", c.attempts, 0.0, "guards unavailable")

    again = await store.claim_events("b", 1, 30)
    assert [c.event.status for c in again] == [Status.FIRING]
