"""The worker's claims while its store is out of reach behind PgBouncer: the backoff ends when
work is announced, so an alert stored once the pooler is back is acted on at once, over the
LISTEN (``database.direct_url``), not after the rest of the backoff; and the warning that
claims fail is logged at most once every ``CLAIM_WARNING_EVERY_S`` (it was, with the default
poll interval, every second or so: 19 lines in a 15 s restart of PostgreSQL).

A real PgBouncer in transaction mode whose database the test disables (``DISABLE``, ``KILL``,
``RESUME``: every connection refused at once, as PgBouncer does while its server logins fail
after a restart) and enables again; PostgreSQL itself, where the worker LISTENs, stays up.
Before, after a restart of PostgreSQL behind PgBouncer, the first alert waited out the claim's
backoff (8.9 s measured; up to 30 s, or the poll interval if shorter), though its NOTIFY had
come at once, and the next took 0.2 s.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pytest
from structlog.testing import capture_logs

from receiver.intake import Intake, IntakeResult
from receiver.model import AlertEvent, Disposition
from receiver.store import Store
from receiver.worker import Worker
from receiver.worker.claim_backoff import CLAIM_WARNING_EVERY_S
from tests.support import payloads
from tests.support import pgbouncer as bouncers
from tests.support.polling import current, eventually

pytestmark = pytest.mark.postgres

FAILED = "store unavailable while claiming"
# A backoff at least this long is under way when the pooler comes back.
LONG_BACKOFF_S = 8.0
# Well under it, on a busy 2-core machine: the claim a NOTIFY brings goes within a second.
PROMPT_S = 4.0


@pytest.fixture
async def pooled(own_pooler: bouncers.PgBouncer, database_url: str) -> AsyncIterator[Store]:
    store = await Store.connect(
        own_pooler.through(database_url), min_size=1, max_size=4, transaction_pooled=True
    )
    try:
        yield store
    finally:
        await store.close()


async def test_an_alert_after_the_pooler_came_back_does_not_wait_out_the_backoff(
    own_pooler: bouncers.PgBouncer, pooled: Store, database_url: str
) -> None:
    done: list[AlertEvent] = []

    async def process(event: AlertEvent) -> Disposition:
        done.append(event)
        return Disposition.done()

    # A ten-minute poll interval: only the LISTEN (direct) makes the worker look in time.
    worker = Worker(
        pooled,
        process,
        concurrency=2,
        lease_s=30.0,
        poll_interval_s=600.0,
        listen_dsn=database_url,
    )

    def delays() -> list[float]:
        # Every failed claim's, said or held back (debug).
        return [float(e["retry_in_s"]) for e in logs if e["event"] == FAILED]

    with capture_logs() as logs:
        await worker.start()
        try:
            await _outlived(worker, own_pooler, pooled, database_url, delays, done)
        finally:
            await worker.stop(grace_s=1)
    assert [e.labels["pod"] for e in done] == ["after"]


async def _outlived(
    worker: Worker,
    pooler: bouncers.PgBouncer,
    pooled: Store,
    database_url: str,
    delays: Callable[[], list[float]],
    done: list[AlertEvent],
) -> None:
    """The pooler's database disabled until a claim backs off ``LONG_BACKOFF_S`` or more,
    then enabled and an alert stored: processed within ``PROMPT_S``."""
    database = database_url.rsplit("/", 1)[1]
    await eventually(current(lambda: worker.listen_checked.is_set()), what="LISTEN up")
    for command in ("DISABLE", "KILL", "RESUME"):
        await pooler.admin(f"{command} {database}")
    worker.wake()  # a claim now fails, and the next ones back off longer each time
    await eventually(
        current(delays),
        lambda seen: bool(seen) and seen[-1] >= LONG_BACKOFF_S,
        timeout_s=60,
        what=f"a claim backoff of {LONG_BACKOFF_S} s or more",
    )
    await pooler.admin(f"ENABLE {database}")
    alert = payloads.alert({"alertname": "DiskFull", "pod": "after"})
    assert await Intake(pooled).accept(payloads.notification(alert)) == IntakeResult(1, 0)
    stored = time.monotonic()
    await eventually(current(lambda: done), timeout_s=30, what="the alert processed")
    waited = time.monotonic() - stored
    assert waited < PROMPT_S, (waited, delays())


async def test_failing_claims_are_warned_of_at_most_every_ten_seconds(
    own_pooler: bouncers.PgBouncer, pooled: Store, database_url: str
) -> None:
    async def process(event: AlertEvent) -> Disposition:
        return Disposition.done()

    # The default poll interval: the claims back off one second at most.
    worker = Worker(pooled, process, concurrency=2, lease_s=30.0, poll_interval_s=1.0)
    database = database_url.rsplit("/", 1)[1]
    with capture_logs() as logs:
        await worker.start()
        try:
            for command in ("DISABLE", "KILL", "RESUME"):
                await own_pooler.admin(f"{command} {database}")
            failed = [e for e in logs if e["event"] == FAILED]
            began = time.monotonic()
            await eventually(
                current(lambda: [e for e in logs if e["event"] == FAILED]),
                lambda seen: len(seen) >= len(failed) + 12,
                timeout_s=60,
                what="twelve failed claims",
            )
            lasted = time.monotonic() - began
            await own_pooler.admin(f"ENABLE {database}")
        finally:
            await worker.stop(grace_s=1)
    failures = [e for e in logs if e["event"] == FAILED]
    warned = [e for e in failures if e["log_level"] == "warning"]
    assert 1 <= len(warned) <= 2 + lasted // CLAIM_WARNING_EVERY_S, (lasted, warned)
    assert all("not_logged_since_last" in e for e in warned)
