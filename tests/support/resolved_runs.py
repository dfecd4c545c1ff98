"""What the tests of a run whose alert resolves while it waits share: the worker's death as
seen from inside (``WorkerDied``), and the alert's resolution taken up (``_resolve``)."""

from __future__ import annotations

from tests.support.approvals import ApprovalEnv, poke_labels
from tests.support.payloads import alert, notification


class WorkerDied(BaseException):
    """What the process's death looks like from inside: nothing catches it."""


async def _resolve(env: ApprovalEnv) -> None:
    await env.harness.intake.accept(notification(alert(poke_labels(), status="resolved")))
    await env.harness.drain()
