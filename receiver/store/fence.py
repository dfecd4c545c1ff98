"""Writes fenced by a claim's lease: a worker that lost its lease writes nothing more.

A worker's statement can reach PostgreSQL late: its connection stalled, the client gave the
statement up on a deadline (store/bounded.py; the lease keeper stops the work when the lease
runs out), and the bytes still arrive, or the statement still runs, after another replica
claimed the same event or job and did the work again, or after the same worker claimed it
again for its retry (the attempt ended with the store's error and released the item).
``complete_sql`` and the lease statements (leases.py) change nothing once the claim is gone
(below); the writes made between the claim and the completion need the same check, or the late
copy lands on the new claim's work: a step outcome overwritten, a run moved back to an outcome
it left, a second audit row, an approval asked again for a step already decided. A write of one
statement, committed on its own (a start mark, a refusal, an announcement's audit row, a new
run), is the one a late copy lands whole; in a transaction, a late first statement is rolled
back with its session, and a late COMMIT holds the item's row locked (below) until it lands.

``LeaseFence`` names the claim a write is made under (``EventLease.fence``, ``ClaimedJob.fence``):
the item, its owner and the item's ``attempts`` as the claim left it. The owner alone does not
name a claim: a worker keeps its owner id for its whole life, so its retry of an item holds
the item under the same owner as its earlier attempt did. Every claim adds one to
``attempts`` (``claim_assignments``: the batch claim, the express claim and the take-over of an
expired lease alike), and the claim returns it (``ClaimedEvent.attempts``, ``ClaimedJob``), so
the claim's number costs nothing more.

The settlements of a claim (leases.py: the lease's extension, the completion, the release,
a deferral's return to pending, the hand-back, and failures.py: a failure, the move to dead)
test the claim the same way (``claimed_sql``, one copy for them all): by its owner alone, a
settlement of an owner's earlier claim, late (its lease ran out while a slow step ran or the
statement was on its way, and the same worker claimed the item again), would complete,
release or fail the later one, which is then worked on by nobody, or twice. Refused, a
settlement answers as for another owner's claim: the lease was lost.

So a claim's number must never be one an earlier claim of the item had, while a statement
of that claim may still come: ``attempts`` is never lowered but by one thing. An item put
back in its queue counts its failures afresh and its attempts not (a job asked for again
while claimed, as its claim completes: jobs.py; a dead item an operator retries:
``Queues.retry_item``); counted from 0 again, the claims after it would have the numbers of
the claims before it. The price: ``attempts`` counts every claim the item ever had, and the
backoff read from it (receiver.worker.attempt) goes on from there rather than from 1 s, which
for a retried dead item is what its failures called for anyway. A token drawn from a sequence
at each claim would never repeat either, but would be a column, a migration and a second
number beside ``attempts`` in every claim's answer and every fence, for the same guarantee.
The one thing that lowers it: a claim handed back unworked takes its own one back
(``Leases._hand_back``), so the next claim has its number again; the hand-back is that
claim's one and only statement (sent before its work and its lease keeper began, never sent
again), so nothing of it can come after it.

Each fenced write carries ``held_sql`` in its own statement (the first one of its
transaction), so the check costs no round trip: the row of the claimed item, locked FOR KEY
SHARE, and only while it is still claimed by that owner under that claim. The lock is what
makes the check hold to the commit: a claim locks the rows it takes FOR UPDATE SKIP LOCKED,
which a key-share lock blocks, so no other claim can take the item between the check and the
commit; and a claim that came first has changed ``attempts`` (and ``lease_owner``, unless it
was the same worker's), which the check reads on the newest row version (a locking read
re-checks its condition on it). The owner's own lease extension and completion are no-key
updates, which a key-share lock does not block, and change neither ``lease_owner`` nor
``attempts``: the claim's writes pass their fence until it ends.

A fenced write whose claim is gone writes nothing (the statement's writes are all conditional
on the check; in a transaction, the first statement's answer raises before the rest) and
raises ``LeaseLost``: the worker stops the item there, writes nothing more for it, does not
retry it and counts no failure (``receiver.worker.attempt``). The lease's expiry alone is not
checked: until the item is claimed again, nobody else works on it, and the write is still
this claim's; once it is, ``attempts`` says so.

Not fenced: the writes whose every effect is decided by what the store holds when they run,
under the run's row lock, so that a late copy does what the new owner does or nothing (a
retry writes nothing): the end of an escalation its alert's resolution overtook
(escalation_ends.py), a follow-up stopped at its stopped step or ended for good
(phase_stop.py), an undo withdrawn on a re-fire (withdrawal.py). They end only steps still
open, never one the new owner ran or began.

A new run is fenced although it is stored once per rule and occurrence: a late copy that lands
before the new claim stores the run would stand as the run (refused or admitted by the lost
claim's guard answer, or pending), and the new claim's pass, finding it stored, leaves it
alone. The statement that stores it refused and completes its event is fenced by that
completion, which finds the event only while its owner holds it under the same claim
(``complete_sql`` given ``EventLease.attempts``) and locks it to the commit: no second lock on
the storm's hottest statement (run_creation.py). So a new run an event's pass finds stored is
never its own earlier attempt's late copy: that copy wrote nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["LeaseFence", "LeaseLost", "check_held", "claimed_sql", "fence_args", "held_sql"]


@dataclass(frozen=True, slots=True)
class LeaseFence:
    """The claim a write is made under: ``kind`` 'event' (a row of ``alert_events``) or
    'job' (of ``jobs``), the item's ``item_id``, the lease ``owner`` and ``attempts``, the
    item's count of claims as this claim left it (the claim's own number: an owner's earlier
    claim of the same item had a smaller one)."""

    kind: Literal["event", "job"]
    item_id: int
    owner: str
    attempts: int


class LeaseLost(Exception):
    """A fenced write found its claim no longer held by its owner: another worker claimed the
    item since. Nothing of the write was kept. The worker stops the item without settling it,
    retrying it or counting a failure: its new owner has it."""

    def __init__(self, fence: LeaseFence, what: str) -> None:
        super().__init__(
            f"{fence.kind} {fence.item_id} is no longer leased to {fence.owner} under its "
            f"claim {fence.attempts}: claimed again since; not written: {what}"
        )
        self.fence = fence
        self.what = what


def fence_args(
    fence: LeaseFence | None,
) -> tuple[str | None, int | None, str | None, int | None]:
    """The four parameters ``held_sql`` reads for ``fence``, in its order: all None for an
    unfenced write (a route or a command, which holds no claim)."""
    if fence is None:
        return None, None, None, None
    return fence.kind, fence.item_id, fence.owner, fence.attempts


def claimed_sql(item: str, owner: str, attempts: str) -> str:
    """The SQL predicate "this row is the item ``item``, still claimed by ``owner`` under the
    claim that left its count of claims at ``attempts``": the one test of a claim, which the
    fence of a write (``held_sql``) and every settlement of a claim (leases.py: extend,
    complete, release, hand back, fail) make alike. The arguments are SQL expressions,
    usually parameters; the row is the statement's unqualified table."""
    return (
        f"id = {item}::bigint AND state = 'claimed' AND lease_owner = {owner}::text"
        f" AND attempts = {attempts}::int"
    )


def held_sql(kind: str, item: str, owner: str, attempts: str) -> str:
    """A SELECT of one boolean ``ok``: true when no fence is given (``kind`` NULL), or when
    the item is still claimed by ``owner`` under the claim that left its count of claims at
    ``attempts`` (``claimed_sql``), its row then locked FOR KEY SHARE until the transaction
    ends. ``kind``, ``item``, ``owner`` and ``attempts`` are SQL expressions, usually
    parameters (``fence_args``). Used as a CTE that every write of the statement is
    conditional on."""
    claimed = claimed_sql(item, owner, attempts)
    return f"""SELECT {kind}::text IS NULL
        OR EXISTS (SELECT FROM alert_events
                   WHERE {kind}::text = 'event' AND {claimed}
                   FOR KEY SHARE)
        OR EXISTS (SELECT FROM jobs
                   WHERE {kind}::text = 'job' AND {claimed}
                   FOR KEY SHARE) AS ok"""


def check_held(ok: bool, fence: LeaseFence | None, what: str) -> None:
    """Raise ``LeaseLost`` (naming ``what`` was not written) when the statement's ``held_sql``
    said ``ok`` false; an unfenced statement's is always true."""
    if ok:
        return
    if fence is None:
        raise RuntimeError(f"an unfenced write found its fence failing: {what}")
    raise LeaseLost(fence, what)
