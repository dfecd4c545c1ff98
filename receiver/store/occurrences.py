"""The SQL fragments of the intake statement (``EventQueue.insert_event_groups``) that decide
what an event is: its occurrence, and whether a worker must see it. Pure text, no I/O.

The occurrence rule (``refire``), worked out at insert from what is stored for the episode:
- Until a resolution of the episode is stored, everything is occurrence 0.
- A firing event received within the late-delivery window after the latest stored resolution
  was received belongs to that resolved occurrence: Alertmanager can deliver a firing
  notification it built before the alert resolved (an HA peer, a retry) that late, so it is a
  late copy, stored (nothing accepted is lost) and never acted on. After the window it opens
  the next occurrence: Alertmanager resolved the alert because its source went quiet past
  endsAt (a resolve timeout), and fires it again with the same startsAt when the source sends
  it again (Prometheus keeps startsAt while the rule stays active).
- A resolved event with the endsAt of a stored resolution is a copy of that one (retries,
  HA peers); otherwise it closes the latest occurrence that fired. When that one is resolved
  already, the window decides as for a firing: within it, a copy (replicas that timed the
  alert out apart send two endsAt); after it, the resolution of the next occurrence: the one
  a firing in the same statement opens, or one whose firing never came or comes later (a
  replica's late retry, then a late copy of a resolved occurrence, never acted on).
- An event intake settles (a firing no rule matches) is stored already done, unless the alert
  has runs that a firing of a later occurrence still acts on (``SETTLED_SQL``).
"""

from __future__ import annotations

__all__ = ["REFIRE_SQL", "SETTLED_LATERAL", "SETTLED_SQL"]

# The occurrence rule (module docstring) over the joins of EventQueue.insert_event_groups
# (input, last_resolved, last_firing, same_end); $3: the window in seconds.
REFIRE_SQL = """CASE
    WHEN last_resolved.refire IS NULL THEN 0
    WHEN input.st = 'firing' THEN
        CASE WHEN last_resolved.received_at > remediator_now() - make_interval(secs => $3)
             THEN last_resolved.refire ELSE last_resolved.refire + 1 END
    WHEN same_end.refire IS NOT NULL THEN same_end.refire
    WHEN last_firing.refire > last_resolved.refire THEN last_firing.refire
    WHEN last_resolved.received_at > remediator_now() - make_interval(secs => $3)
        THEN last_resolved.refire
    ELSE last_resolved.refire + 1
END"""

# Why an event is stored already done (j->>7, an event of $1: no rule matches a firing), unless
# the alert has runs a firing of a later occurrence must still reach (the rules changed since
# they were made): open ones, which it closes, and closed ones whose undo waits for an
# approval, which it withdraws (receiver.episodes). Settled, it never reached the worker, and
# they stayed so.
#
# Each alert probes its own runs and nothing else: OFFSET 0 keeps each EXISTS a correlated
# subplan, run for the alert's fingerprint. Without it PostgreSQL made both hashed subplans,
# built once a statement from every open run (runs_fingerprint_open whole: 6,000 index
# entries a statement of 10 unmatched alerts on a store of 20,000 runs), every pending
# approval, or all of runs read sequentially, whatever the batch; on tables analysed while
# empty too (tests/integration/test_intake_settle_flat.py). The pending approvals are read
# from the alert's runs (approvals_one_pending_per_step by run_id), never the other way
# round: an incident with nobody deciding can leave many pending. The intake statement
# computes it once an event (``SETTLED_LATERAL``), not once for each place that reads it.
SETTLED_SQL = """CASE WHEN j->>7 IS NULL
    OR EXISTS (SELECT 1 FROM runs x WHERE x.fingerprint = j->>0
                 AND (x.resolved_at IS NULL OR x.undo_deferred) OFFSET 0)
    -- From the alert's runs (runs_episode: none, for most of a catch-all feed), not from the
    -- pending approvals, which an incident with nobody deciding can make many.
    OR EXISTS (SELECT 1 FROM runs y WHERE y.fingerprint = j->>0
                 AND EXISTS (SELECT 1 FROM approvals p
                             JOIN steps x ON x.run_id = p.run_id AND x.idx = p.step_idx
                               AND x.phase = 'resolve'
                             WHERE p.run_id = y.id AND p.state = 'pending' OFFSET 0)
               OFFSET 0)
    THEN NULL ELSE j->>7 END"""

# ``SETTLED_SQL`` as a LATERAL of the input rows (j), its column ``sr``: OFFSET 0 keeps the
# subquery from being pulled up, so the INSERT that reads sr three times evaluates it once.
SETTLED_LATERAL = f"LATERAL (SELECT {SETTLED_SQL} AS sr OFFSET 0) AS settled"
