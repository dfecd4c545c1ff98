"""Whether a failed step may have acted, as the actions and the pipeline decide it. Pure.

HTTP: a try answered 2xx or 5xx, or that failed after its request left (a timeout while
waiting for the answer, a dropped connection), may have reached the endpoint; one whose
connection was never made, or answered 429, 3xx or 4xx, did not (remediations.http.post); a
Kubernetes call's tries the same way (remediations.kubernetes.retry). The errors' own
defaults: the safe side (may have acted) unless raised before anything is sent.
The pipeline counts a failed step that may have acted as a possible change, as an interrupted
one (receiver.pipeline.context.possible_change), and says why on its undo (undo.caveat).
"""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from hypothesis import given
from hypothesis import strategies as st
from kubernetes_asyncio.client.exceptions import ApiException

from receiver.pipeline.context import possible_change
from receiver.pipeline.undo import caveat
from receiver.store import RunRecord, StepRecord
from remediations.base import (
    ActionError,
    ActionRefused,
    MissingClient,
    Outcome,
    ParamsError,
    TransientActionError,
)
from remediations.http.post import answer_may_have_acted, failure_may_have_acted
from remediations.kubernetes import retry as kube_retry
from remediations.retrying import call_with_retries
from remediations.targets import Target
from remediations.template_work import TemplateFailed, TemplateTooLarge
from tests.support.run_records import failed_run

_KEY = ConnectionKey("127.0.0.1", 9, False, True, None, None, None)


@given(st.integers(min_value=100, max_value=599))
def test_an_answer_may_have_acted_when_2xx_or_5xx_or_a_redirect_after_processing(
    status: int,
) -> None:
    expected = 200 <= status < 300 or status >= 500 or status in (301, 302, 303)
    assert answer_may_have_acted(status) is expected


@pytest.mark.parametrize("status", [301, 302, 303])
def test_a_redirect_sent_after_a_post_was_processed_may_have_acted(status: int) -> None:
    # RFC 9110 15.4.4: 303 See Other is the answer after a POST was processed (301 and 302 are
    # sent the same way); recorded as not acted, its undo and the breaker counted no change.
    assert answer_may_have_acted(status)


@pytest.mark.parametrize("status", [300, 304, 307, 308, 400, 401, 403, 404, 409, 422, 429])
def test_an_answer_that_turned_the_request_away_did_not_act(status: int) -> None:
    assert not answer_may_have_acted(status)


@pytest.mark.parametrize(
    "error",
    [
        aiohttp.ClientConnectorError(_KEY, ConnectionRefusedError(111, "Connection refused")),
        aiohttp.ConnectionTimeoutError("Connection timeout to host"),
        aiohttp.InvalidURL("http://[::1"),
    ],
    ids=["refused", "connect-timeout", "invalid-url"],
)
def test_a_try_whose_request_never_left_did_not_act(error: BaseException) -> None:
    assert not failure_may_have_acted(error)


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError(),
        aiohttp.SocketTimeoutError("Timeout on reading data from socket"),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        aiohttp.ClientPayloadError("Response payload is not completed"),
        RuntimeError("unforeseen"),
    ],
    ids=["timeout", "read-timeout", "disconnected", "reset", "payload", "unforeseen"],
)
def test_a_try_that_failed_after_sending_may_have_acted(error: BaseException) -> None:
    assert failure_may_have_acted(error)


def test_errors_may_have_acted_unless_raised_before_anything_is_sent() -> None:
    assert ActionError("x").may_have_acted
    assert TransientActionError("x").may_have_acted
    assert not ActionRefused("x").may_have_acted
    assert not ParamsError("a", "b").may_have_acted
    assert not MissingClient("http").may_have_acted
    assert not TemplateFailed("x").may_have_acted
    assert not TemplateTooLarge("x").may_have_acted
    # The raiser's word wins over the class's.
    assert ActionRefused("x", may_have_acted=True).may_have_acted
    assert not TransientActionError("x", may_have_acted=False).may_have_acted


@pytest.mark.parametrize("acts", [True, False])
async def test_exhausted_retries_carry_the_callers_word(acts: bool) -> None:
    async def broken() -> None:
        raise ConnectionError("down")

    with pytest.raises(TransientActionError) as caught:
        await call_with_retries(
            broken,
            what="w",
            attempts=2,
            wait=lambda _state: 0.0,
            transient=lambda exc: isinstance(exc, ConnectionError),
            may_have_acted=acts,
        )
    assert caught.value.may_have_acted is acts


async def test_exhausted_retries_judged_per_try_say_whether_any_try_may_have_acted() -> None:
    refused = aiohttp.ClientConnectorError(_KEY, ConnectionRefusedError(111, "refused"))
    lost = aiohttp.ServerDisconnectedError()

    async def failing(errors: list[BaseException]) -> bool:
        async def call() -> None:
            raise errors.pop(0)

        with pytest.raises(TransientActionError) as caught:
            await call_with_retries(
                call,
                what="w",
                attempts=3,
                wait=lambda _state: 0.0,
                transient=lambda exc: isinstance(exc, aiohttp.ClientError),
                acted=failure_may_have_acted,
            )
        return caught.value.may_have_acted

    assert await failing([refused, refused, refused]) is False
    # A lost answer on any try, even one followed by refusals, may have acted.
    assert await failing([lost, refused, refused]) is True
    assert await failing([refused, refused, lost]) is True


@pytest.mark.parametrize(
    ("error", "acted"),
    [
        (aiohttp.ClientConnectorError(_KEY, ConnectionRefusedError(111, "refused")), False),
        (aiohttp.ConnectionTimeoutError("Connection timeout to host"), False),
        (ApiException(status=429, reason="Too Many Requests"), False),
        (ApiException(status=503, reason="Service Unavailable"), True),
        (ApiException(status=500, reason="Internal Server Error"), True),
        (aiohttp.ServerDisconnectedError(), True),
        (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), True),
        (TimeoutError(), True),
    ],
    ids=[
        "refused",
        "connect-timeout",
        "429",
        "503",
        "500",
        "disconnected",
        "read-timeout",
        "timeout",
    ],
)
def test_a_kubernetes_try_may_have_acted_unless_nothing_was_sent_or_it_was_throttled(
    error: BaseException, acted: bool
) -> None:
    assert kube_retry.failure_may_have_acted(error) is acted


_OUTCOMES = [*(o.value for o in Outcome), "started", "pending", "not_run", "awaiting_approval"]


@given(st.sampled_from(_OUTCOMES), st.booleans())
def test_a_possible_change_is_a_stopped_step_or_a_failed_one_that_may_have_acted(
    outcome: str, acted: bool
) -> None:
    expected = outcome in ("interrupted", "started") or (outcome == "failed" and acted)
    assert possible_change(outcome, acted) is expected


def _step(idx: int, outcome: str, acted: bool, phase: str = "run") -> StepRecord:
    return StepRecord(
        run_id="r",
        phase=phase,
        idx=idx,
        action="http.call",
        params={},
        needs_approval=False,
        outcome=outcome,
        message="",
        before=None,
        after=None,
        attempts=1,
        started_at=None,
        finished_at=None,
        may_have_acted=acted,
    )


def _run(*steps: StepRecord) -> RunRecord:
    return failed_run("flag", Target("HttpEndpoint", "", "flags"), *steps)


def test_the_undo_of_a_run_whose_step_failed_after_sending_says_why() -> None:
    text = caveat(_run(_step(0, "ok", False), _step(1, "failed", True)))
    assert text.startswith(
        "planned because run step 1 (http.call) failed after its request may have reached "
        "its system"
    )
    assert text.endswith("the change this step undoes may not have happened")


def test_no_caveat_for_a_failed_step_known_not_to_have_acted() -> None:
    assert caveat(_run(_step(0, "ok", False), _step(1, "failed", False))) == ""
    # Only the run's own steps: an undo that failed after sending is no reason for itself.
    assert caveat(_run(_step(0, "ok", False), _step(0, "failed", True, "resolve"))) == ""
