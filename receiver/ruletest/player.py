"""Playing one test's timeline against the real pipeline on the simulated clock.

The clock moves from one instant of the test to the next (the ``at`` of its entries and of its
expectations). On the way, every piece of work that falls due (a verification deadline, an
approval's expiry, an on_resolved step held by a guard) is processed at the time it is due, in
order, as a worker would: the clock is set to the due time and the queues are drained
(``Harness.drain`` in the tests does the same). At an instant, each entry is played in file
order and the queues drained after it; then the expectations of that instant are checked.

Draining is the worker's job done synchronously: claim the due alert events and jobs, hand
each to the pipeline, settle it (done, or released for a retry the pipeline asked for), until
nothing is due. An error the pipeline raises is not retried here: it is a bug, and it ends the
test with the error, at the line of the entry being played. A decision that cannot be made
(``approve`` or ``reject`` with nothing pending to decide) does not end it: it is a failure at
its line, and the rest of the timeline and the expectations are still played and checked.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from receiver.approvals.policy import Identity
from receiver.approvals.state import ApprovalError, Channel, Decision, Origin
from receiver.model import ApprovalRecord, ApprovalState
from receiver.rules.yaml_lines import KeyPath
from receiver.ruletest.expect import Failure, Reader, check, observe
from receiver.ruletest.files import SimSettings, TestFile
from receiver.ruletest.notifications import AlertTrack, PlayError, notification_for
from receiver.ruletest.sim import Simulation
from receiver.ruletest.spec import NOTIFICATION_KINDS, DecisionSpec, EntrySpec, TestSpec

__all__ = ["Player", "approvers_of"]

OWNER = "rule-test"
LEASE_S = 60.0
CLAIM_LIMIT = 50
# Bounds that only a bug reaches (a job that asks to be retried at once, forever).
MAX_DRAIN_ROUNDS = 200
MAX_DUE_STEPS = 10_000


def approvers_of(test: TestSpec) -> set[str]:
    """Every name the test decides approvals as: all of them may decide."""
    names = {"tester"}
    for entry in test.timeline:
        for decision in (entry.approve, entry.reject):
            if decision is not None:
                names.add(decision.by)
    return names


class Player:
    """Plays one test (``tests[index]`` of ``file``) on ``sim``; ``play()`` returns the
    failures, empty when the test passed."""

    def __init__(
        self,
        sim: Simulation,
        file: TestFile,
        index: int,
        settings: SimSettings,
        rule_order: dict[str, int],
    ) -> None:
        self.sim = sim
        self.file = file
        self.test = file.spec.tests[index]
        self.base: KeyPath = ("tests", index)
        self.settings = settings
        self.rule_order = rule_order
        self.tracks = {name: AlertTrack.of(name, spec) for name, spec in self.test.alerts.items()}
        self.failures: list[Failure] = []
        self.alert_order = {t.fingerprint: i for i, t in enumerate(self.tracks.values())}
        self.reader = Reader(
            line=file.line,
            file=file.path,
            alert_of={t.fingerprint: name for name, t in self.tracks.items()},
            start=settings.start,
        )

    async def play(self) -> list[Failure]:
        test = self.test
        self.sim.facts.apply(test.fixtures)
        end = max([e.at for e in test.timeline] + [x.at for x in test.expect if x.at is not None])
        entries: dict[float, list[tuple[int, EntrySpec]]] = defaultdict(list)
        for j, entry in enumerate(test.timeline):
            entries[entry.at].append((j, entry))
        checks: dict[float, list[int]] = defaultdict(list)
        for j, expect in enumerate(test.expect):
            checks[end if expect.at is None else expect.at].append(j)
        for instant in sorted({*entries, *checks}):
            path: KeyPath = self.base
            try:
                await self._advance_to(instant)
                for j, entry in entries.get(instant, []):
                    path = (*self.base, "timeline", j)
                    await self._play(entry, path)
                    await self._drain()
            except PlayError as exc:
                self.failures.append(self.reader.fail(path, str(exc)))
                return self.failures
            except Exception as exc:  # a bug in the service: say where, stop this test
                message = f"the service raised {type(exc).__name__}: {exc}"
                self.failures.append(self.reader.fail(path, message))
                return self.failures
            if checks.get(instant):
                observed = await observe(self.sim.store, self.rule_order, self.alert_order)
                for j in checks[instant]:
                    expect_path = (*self.base, "expect", j)
                    self.failures += check(test.expect[j], expect_path, observed, self.reader)
        return self.failures

    # -- time ---------------------------------------------------------------------------------

    async def _advance_to(self, offset_s: float) -> None:
        """Process the work due up to ``offset_s``, each at its due time; then move there."""
        target = self.settings.at(offset_s)
        store, clock = self.sim.store, self.sim.clock
        for _ in range(MAX_DUE_STEPS):
            due = [d for d in (await store.next_event_due(), await store.next_job_due()) if d]
            if not due or min(due) > target:
                break
            clock.set(min(due))
            if await self._drain() == 0:
                raise PlayError(
                    f"work due at {self.reader.offset(min(due))} is never taken up "
                    "(a bug in the simulation or the queues)"
                )
        else:
            raise PlayError("work keeps falling due: the simulation does not settle")
        clock.set(target)

    async def _drain(self) -> int:
        """Claim and process what is due now until nothing is; returns how many items."""
        store, pipeline = self.sim.store, self.sim.pipeline
        done = 0
        for _ in range(MAX_DRAIN_ROUNDS):
            events = await store.claim_events(OWNER, CLAIM_LIMIT, LEASE_S)
            for claimed in events:
                disposition = await pipeline(claimed.event)
                if disposition.is_done:
                    await store.complete_event(claimed.event.id, OWNER, claimed.attempts)
                else:
                    delay = disposition.retry_after_s or 0.0
                    await store.release_event(
                        claimed.event.id, OWNER, claimed.attempts, delay, disposition.error
                    )
            jobs = await store.claim_jobs(OWNER, CLAIM_LIMIT, LEASE_S)
            for job in jobs:
                disposition = await pipeline.run_job(job)
                if disposition.is_done:
                    await store.complete_job(job.id, OWNER, job.attempts)
                else:
                    delay = disposition.retry_after_s or 0.0
                    await store.release_job(job.id, OWNER, job.attempts, delay, disposition.error)
            done += len(events) + len(jobs)
            if not events and not jobs:
                return done
        raise PlayError("the queues do not settle: work is retried at once, again and again")

    # -- entries ------------------------------------------------------------------------------

    async def _play(self, entry: EntrySpec, path: KeyPath) -> None:
        kind = entry.kind
        now = self.sim.clock()
        if kind in NOTIFICATION_KINDS:
            handles: list[str] = getattr(entry, kind)
            alerts = [
                self.tracks[h].next_alert(kind, entry, now, self.settings.start) for h in handles
            ]
            await self.sim.intake.accept(notification_for(alerts))
        elif kind == "pause":
            assert entry.pause is not None
            await self.sim.guards.pause(entry.pause.for_, entry.pause.reason)
        elif kind == "resume":
            await self.sim.guards.resume()
        elif kind == "fixtures":
            self.sim.facts.apply(entry.fixtures or ())
        else:
            decision = entry.approve if kind == "approve" else entry.reject
            assert decision is not None
            await self._decide(Decision(kind), decision, (*path, kind))

    async def _decide(self, decision: Decision, spec: DecisionSpec, path: KeyPath) -> None:
        """Decide through the real approval desk, as ``spec.by`` from the API channel.

        A decision that cannot be made (no approval asked for, several match, the desk refuses
        it and ``fails`` does not expect that) is a failure at its line, and the test goes on
        without it, as the service goes on when an operator's decision is refused: what the
        test expects afterwards is still checked."""
        try:
            approval = await self._pick(spec, decision.value)
        except PlayError as exc:
            self.failures.append(self.reader.fail(path, str(exc)))
            return
        try:
            await self.sim.desk.decide(
                approval.id,
                decision,
                Identity(name=spec.by, via="rule-test"),
                Origin(channel=Channel.API, user_agent="remediator test"),
                reason=spec.reason,
            )
        except ApprovalError as exc:
            if spec.fails is None:
                self.failures.append(
                    self.reader.fail(path, f"{decision.value}: refused: {exc.message}")
                )
                return
            if spec.fails not in exc.message:
                self.failures.append(
                    self.reader.fail(
                        (*path, "fails"),
                        f"{decision.value}: expected a refusal saying {spec.fails!r}, "
                        f"got {exc.message!r}",
                    )
                )
            return
        if spec.fails is not None:
            self.failures.append(
                self.reader.fail(
                    (*path, "fails"),
                    f"{decision.value}: expected it to be refused ({spec.fails!r}), it was taken",
                )
            )

    async def _pick(self, spec: DecisionSpec, verb: str) -> ApprovalRecord:
        """The approval the selectors name: the pending one, else the latest (to be told why
        it cannot be decided). PlayError when none or several pending ones match."""
        approvals = await self.sim.store.list_approvals(limit=500)
        runs: dict[str, Any] = {}
        matching: list[ApprovalRecord] = []
        for approval in approvals:
            if spec.rule is not None and approval.rule != spec.rule:
                continue
            if spec.action is not None and approval.action != spec.action:
                continue
            if spec.alert is not None:
                if approval.run_id not in runs:
                    runs[approval.run_id] = await self.sim.store.get_run(
                        approval.run_id, with_steps=False
                    )
                run = runs[approval.run_id]
                if run is None or self.reader.alert_of.get(run.fingerprint) != spec.alert:
                    continue
            matching.append(approval)
        pending = [a for a in matching if a.state is ApprovalState.PENDING]
        if len(pending) == 1:
            return pending[0]
        if len(pending) > 1:
            names = ", ".join(f"{a.action} of {a.rule}" for a in pending)
            raise PlayError(
                f"{verb}: {len(pending)} approvals are pending ({names}); "
                "say which with rule, alert or action"
            )
        if matching:
            return matching[0]  # newest first: the latest, decided or expired
        raise PlayError(f"{verb}: no approval was asked for{_selectors(spec)}")


def _selectors(spec: DecisionSpec) -> str:
    given: Sequence[tuple[str, str | None]] = (
        ("rule", spec.rule),
        ("alert", spec.alert),
        ("action", spec.action),
    )
    named = ", ".join(f"{k} {v}" for k, v in given if v is not None)
    return f" ({named})" if named else ""
