"""Alert events and runs as the store holds them, for tests that start below intake.

``new_event`` is a row intake would store (``NewEvent``), ``alert_event`` one the worker hands
the pipeline (``AlertEvent``), ``new_run`` a run created for its own alert episode,
``finished_runs`` a few such runs taken to the end (an audit log to verify or export). A
fingerprint given as an int ``i`` is ``f"{i:016x}"``: distinct ints, distinct alerts. (Tests
that go through intake build Alertmanager payloads with tests/support/payloads.py instead.)
"""

from __future__ import annotations

from collections.abc import Mapping

from receiver.alertmanager import ZERO_TIME
from receiver.model import AlertEvent, RunOutcome, Status, Target
from receiver.store import NewEvent, Store

__all__ = [
    "FINGERPRINT",
    "STARTS_AT",
    "TARGET",
    "alert_event",
    "fingerprint_of",
    "finished_runs",
    "new_event",
    "new_run",
]

FINGERPRINT = "0123456789abcdef"
STARTS_AT = "2024-05-01T10:00:00.123456789Z"  # nanoseconds, as Alertmanager sends them
# The target of the runs the store tests create by hand.
TARGET = Target("Deployment", "shop", "checkout")


def fingerprint_of(fingerprint: str | int) -> str:
    return f"{fingerprint:016x}" if isinstance(fingerprint, int) else fingerprint


def _labels(alertname: str, labels: Mapping[str, str] | None) -> dict[str, str]:
    if labels is not None:
        return dict(labels)
    return {"alertname": alertname, "namespace": "shop", "deployment": "checkout"}


def new_event(
    fingerprint: str | int = FINGERPRINT,
    status: Status = Status.FIRING,
    *,
    starts_at: str = STARTS_AT,
    alertname: str = "HighMemoryUsage",
    labels: Mapping[str, str] | None = None,
    ends_at: str = ZERO_TIME,
) -> NewEvent:
    """One alert's row; ``labels`` replace the default ones (alertname, namespace shop,
    deployment checkout) entirely."""
    return NewEvent(
        fingerprint=fingerprint_of(fingerprint),
        starts_at=starts_at,
        status=status,
        labels=_labels(alertname, labels),
        annotations={"summary": "memory near limit"},
        group_key=f'{{}}:{{alertname="{alertname}"}}',
        receiver="remediator",
        ends_at=ends_at,
    )


def alert_event(
    event_id: int = 1,
    fingerprint: str | int = FINGERPRINT,
    *,
    status: Status = Status.FIRING,
    starts_at: str = STARTS_AT,
    alertname: str = "HighMemoryUsage",
    labels: Mapping[str, str] | None = None,
) -> AlertEvent:
    """The event as claimed from the queue (id ``event_id``)."""
    return AlertEvent(
        id=event_id,
        fingerprint=fingerprint_of(fingerprint),
        starts_at=starts_at,
        status=status,
        labels=_labels(alertname, labels),
        annotations={},
    )


async def new_run(
    store: Store,
    i: int = 0,
    *,
    rule: str = "r",
    target: Target | None = None,
    dry_run: bool = True,
) -> str:
    """A run of its own alert episode (fingerprint and target from ``i``); its id."""
    run_id = await store.create_run(
        rule=rule,
        event=alert_event(i + 1, i),
        target=target or Target("Deployment", "shop", f"w{i}"),
        dry_run=dry_run,
    )
    assert run_id is not None, "a new episode always gets a run"
    return run_id


async def finished_runs(store: Store, count: int) -> list[str]:
    """``count`` runs (``new_run(store, i)``), each running one restart step that succeeds:
    four audit rows a run, in order. Their ids."""
    ids = []
    for i in range(count):
        run_id = await new_run(store, i)
        await store.set_run_outcome(run_id, RunOutcome.RUNNING)
        await store.record_step(run_id, idx=0, action="kubernetes.rollout_restart", outcome="ok")
        await store.set_run_outcome(run_id, RunOutcome.SUCCEEDED)
        ids.append(run_id)
    return ids
