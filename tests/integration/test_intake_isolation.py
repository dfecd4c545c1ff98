"""One notification the store refuses never fails the others of its group commit (real store).

Parsing replaces what PostgreSQL cannot hold, so these notifications are built past the parser,
as a bug that let one through would build them: the batch must still isolate it.
"""

from __future__ import annotations

import asyncio
import json
from io import StringIO

import asyncpg
import pytest
import structlog

from receiver.alertmanager import Notification
from receiver.intake import Intake, IntakeFailed, IntakeResult
from receiver.store import Store
from tests.support.payloads import alert, notification_body

pytestmark = pytest.mark.postgres


def _notification(pod: str, *, poison: str = "") -> Notification:
    """Built past the parser (which would replace the poison), as a parser bug would let it by."""
    sent = alert(
        {"alertname": "KubePodNotReady", "namespace": "other", "pod": pod},
        starts_at="2026-11-30T02:00:00Z",
        annotations={"summary": f"secret-of-{pod}{poison}"},
    )
    return Notification.model_validate(notification_body(sent))


def _rendering_logger() -> tuple[structlog.typing.FilteringBoundLogger, StringIO]:
    """A logger that renders what production would write (tracebacks included) into a buffer."""
    out = StringIO()
    log = structlog.wrap_logger(
        structlog.PrintLogger(out),
        processors=[structlog.processors.format_exc_info, structlog.processors.JSONRenderer()],
    )
    return log, out


async def _stored_pods(database_url: str) -> set[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT labels->>'pod' AS pod FROM alert_events")
    finally:
        await conn.close()
    return {r["pod"] for r in rows}


@pytest.mark.parametrize("poison", ["\x00", "\ud800"], ids=["NUL", "lone-surrogate"])
@pytest.mark.parametrize("where", [0, 10, 20], ids=["first", "middle", "last"])
async def test_the_refused_notification_fails_alone(
    store: Store, database_url: str, poison: str, where: int
) -> None:
    log, out = _rendering_logger()
    intake = Intake(store, log=log)
    pods = [f"innocent-{i}" for i in range(20)]
    notes = [_notification(pod) for pod in pods]
    notes.insert(where, _notification("poisoned", poison=poison))
    # One loop turn: the writer starts on the next, so all 21 share its first transaction.
    outcomes = await asyncio.gather(*(intake.accept(n) for n in notes), return_exceptions=True)

    failed = outcomes.pop(where)
    assert outcomes == [IntakeResult(1, 0)] * 20
    assert isinstance(failed, IntakeFailed)
    assert await _stored_pods(database_url) == set(pods)
    # Said once, without values: the batch's error could quote any member.
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "group commit failed; writing its notifications one at a time"
    ]
    assert lines[0]["notifications"] == 21
    assert "secret" not in out.getvalue()
    # The refused notification's error names the store's error, not what it was given.
    assert "secret" not in str(failed)
    assert "the store refused the notification" in str(failed)
    # A retry of an innocent is a duplicate: each was stored once.
    assert await intake.accept(notes[(where + 1) % 21]) == IntakeResult(0, 1)


async def test_without_group_commit_the_refusal_is_intake_failed(store: Store) -> None:
    intake = Intake(store, group_commit=False)
    with pytest.raises(IntakeFailed) as caught:
        await intake.accept(_notification("poisoned", poison="\x00"))
    assert "secret" not in str(caught.value)
    assert await intake.accept(_notification("fine")) == IntakeResult(1, 0)


async def test_a_batch_of_one_is_not_written_twice(store: Store, database_url: str) -> None:
    log, out = _rendering_logger()
    intake = Intake(store, log=log)
    with pytest.raises(IntakeFailed):
        await intake.accept(_notification("poisoned", poison="\x00"))
    assert out.getvalue() == ""  # alone already: nothing to retry, nothing to say
    assert await _stored_pods(database_url) == set()
