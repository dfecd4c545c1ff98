"""The webhook's ``http_config`` as Alertmanager really sends it, for each of two versions:
Debian's (0.25) and a current one (0.35): a wrong bearer token, and basic auth.

1. A wrong token in ``credentials_file``: the receiver answers 401, which Alertmanager logs as
   an unrecoverable error naming the status; the receiver stores nothing meanwhile. Once the
   file holds the right token (Alertmanager reads it on every request), the next flush
   delivers the alert: nothing is lost, one run (alertmanager/README.md, "Token").
2. ``basic_auth`` with a ``password_file`` against a receiver configured with the same pair
   (REMEDIATOR_WEBHOOK_USERNAME / _PASSWORD_FILE): delivered, one run.

Alertmanager's and the receiver's logs are printed when a test fails
(tests/support/alertmanager_delivery.py).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from receiver.alertmanager import parse_rfc3339
from tests.support import alertmanagers
from tests.support.alertmanager_delivery import (
    FINISHED,
    RULE,
    TARGET,
    Processes,
    Receiver,
    _metric,
    _post_alert,
    _rfc3339,
    _runs,
    _until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]


async def _one_finished_run(session: aiohttp.ClientSession, receiver: Receiver) -> dict[str, Any]:
    async def finished() -> dict[str, Any] | None:
        runs = await _runs(session, receiver)
        assert len(runs) <= 1, runs
        return runs[0] if runs and runs[0]["outcome"] in FINISHED else None

    run = await _until("the alert's run", finished)
    assert (run["rule"], run["target"]) == (RULE, TARGET)
    return run


async def test_a_wrong_token_is_refused_and_the_alert_arrives_once_it_is_right(
    processes: Processes,
) -> None:
    receiver = processes.start_receiver(processes.data)
    right = processes.token
    processes.token_file.write_text("not-the-receivers-token-" + "x" * 24 + "\n")
    am = processes.start_alertmanager("am", receiver.url)
    starts_at = _rfc3339(datetime.now(UTC) - timedelta(seconds=30))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await alertmanagers.ready(session, am)
        await _post_alert(session, am, starts_at)

        async def refused_twice() -> float | None:
            n = await _metric(
                session, am.url, "alertmanager_notifications_failed_total", integration="webhook"
            )
            return n if n >= 2 else None

        # Two flushes, each refused: a 4xx is not retried within a flush, but every flush tries.
        await _until("Alertmanager's deliveries to be refused", refused_twice)
        assert "unexpected status code 401" in am.log_tail(), "no refusal in Alertmanager's log"
        assert await _metric(session, receiver.url, "remediator_alerts_received_total") == 0
        assert (
            await _metric(session, receiver.url, "remediator_http_requests_total", code="401") >= 2
        )
        assert await _runs(session, receiver) == []

        processes.token_file.write_text(right + "\n")
        run = await _one_finished_run(session, receiver)
        # The same instant: Go's RFC3339Nano drops trailing zeros (".700Z" arrives as ".7Z").
        assert parse_rfc3339(run["starts_at"]) == parse_rfc3339(starts_at)

    assert processes.stop_receiver(receiver) == 0


async def test_basic_auth_from_a_password_file_delivers(processes: Processes) -> None:
    password = processes.tmp / "webhook-password"
    password.write_text("a-password-for-the-webhook-only\n")
    password.chmod(0o600)
    receiver = processes.start_receiver(
        processes.data,
        settings={
            "REMEDIATOR_WEBHOOK_USERNAME": "alertmanager",
            "REMEDIATOR_WEBHOOK_PASSWORD_FILE": str(password),
        },
    )
    basic = {"basic_auth": {"username": "alertmanager", "password_file": str(password)}}
    am = processes.start_alertmanager("am", receiver.url, http_config=basic)
    starts_at = _rfc3339(datetime.now(UTC) - timedelta(seconds=30))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await alertmanagers.ready(session, am)
        await _post_alert(session, am, starts_at)
        await _one_finished_run(session, receiver)
        failed = await _metric(
            session, am.url, "alertmanager_notifications_failed_total", integration="webhook"
        )
        assert failed == 0

    assert processes.stop_receiver(receiver) == 0
