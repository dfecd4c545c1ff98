"""A failed run's outcome is written only once its rule's circuit breaker has counted it: when
Redis does not take the failure (here an ACL that keeps the guards off the breaker's failures,
so that the admission and the lock's release still pass), the run stays running and its retry
counts it, as it does when the lock cannot be given back. Before, the failure was logged and
lost, the run ended failed, and a rule failing while Redis refused writes never tripped.
Real PostgreSQL and Redis."""

from __future__ import annotations

import redis.asyncio
from pydantic import BaseModel

from receiver.guards.policy import GuardSettings
from receiver.model import RunOutcome
from remediations.base import ActionContext, Outcome, Result
from remediations.targets import Target
from tests.support.payloads import alert, notification
from tests.support.pipeline import MakeHarness
from tests.support.pipeline_restart import BUMP, Bump, labels
from tests.support.redis_fixtures import acl_user

# Every guard key but the breaker's failures (admission reads only whether it is open).
FAILURES = "remediator:breaker:failures:restart-web"
KEYS = [
    "~remediator:pause",
    "~remediator:budget",
    "~remediator:cooldown:*",
    "~remediator:rate:*",
    "~remediator:lock:*",
    "~remediator:fence:*",
    "~remediator:released:*",
    "~remediator:digest:*",
    "~remediator:breaker:open:*",
]


class Broken(Bump):
    """A step that fails without acting."""

    name = "test.broken"

    async def run(self, ctx: ActionContext, target: Target, params: BaseModel) -> Result:
        return Result(Outcome.FAILED, "broken")


async def test_a_failure_the_breaker_cannot_count_yet_is_counted_by_the_retry(
    make_harness: MakeHarness, redis_client: redis.asyncio.Redis, redis_url: str
) -> None:
    async with acl_user(redis_client, redis_url, "no-breaker-writes", KEYS) as limited:
        h = await make_harness(
            BUMP.replace("test.bump", "test.broken"),
            GuardSettings(breaker_failures=1),
            dry_run=False,
            extra_actions=[Broken()],
            redis_client_override=limited,
            guards_down_retry_s=0.0,
        )
        await h.intake.accept(notification(alert(labels())))
        await h.drain(rounds=1)
        run = await h.only_run()
        assert [s.outcome for s in run.steps] == ["failed"]
        assert run.outcome is RunOutcome.RUNNING, run.outcome  # not ended uncounted
        assert await redis_client.zcard(FAILURES) == 0
        # Retried until Redis takes it, never dead: the event's error says what Redis said.
        events, _ = await h.store.list_events()
        (event,) = events
        assert event["state"] == "pending", event
        assert "could not be counted in its rule's circuit breaker" in event["last_error"]
        assert "NoPermissionError: this user has no permissions" in event["last_error"]

        await redis_client.acl_setuser(
            "no-breaker-writes", keys=["~remediator:breaker:failures:*"], reset_keys=False
        )
        await h.drain()
        run = await h.only_run()
        assert run.outcome is RunOutcome.FAILED
        assert [s.outcome for s in run.steps] == ["failed"]  # the step did not run again
        assert await redis_client.zcard(FAILURES) == 1
        assert await redis_client.exists("remediator:breaker:open:restart-web")
