"""http.call against a real local HTTP server: retries on 5xx and 429 (Retry-After honoured
within the cap), none on 4xx, timeouts, redirects not followed, the allow-list."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import aiohttp
import pytest

from remediations.base import (
    ActionContext,
    ActionError,
    ActionRefused,
    AlertFacts,
    Clients,
    Outcome,
    TransientActionError,
)
from remediations.http.endpoints import Endpoint, HttpCall, HttpCallParams, HttpEndpoints
from remediations.http.post import HttpPolicy
from remediations.targets import Target
from tests.support.peer import Peer, Reply, peer

__all__ = ["peer"]

FAST = HttpPolicy(timeout=2.0, attempts=3, initial_wait=0.01, max_wait=0.05, max_retry_after=5)
ALERT = AlertFacts(labels={"alertname": "CacheStale", "service": "shop"}, status="firing")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as created:
        yield created


def endpoints(session: aiohttp.ClientSession, **urls: str | Endpoint) -> HttpEndpoints:
    built = {
        name: url if isinstance(url, Endpoint) else Endpoint(name, url, {"X-Token": "t"}, FAST)
        for name, url in urls.items()
    }
    return HttpEndpoints(built, session)


def ctx(client: HttpEndpoints, *, dry_run: bool = False) -> ActionContext:
    return ActionContext("run-7", dry_run, Clients({"http": client}), rule="flush", alert=ALERT)


def call(name: str) -> Target:
    return Target("HttpEndpoint", "", name)


PARAMS = HttpCallParams.model_validate(
    {"body": {"service": "{{ labels.service }}", "reason": "{{ labels.alertname }}", "n": 1}}
)


async def test_posts_the_rendered_body_with_the_configured_headers(
    peer: Peer, session: aiohttp.ClientSession
) -> None:
    url = peer.answer("/flush", Reply(200, '{"flushed": true}'))

    result = await HttpCall().run(ctx(endpoints(session, flush=url)), call("flush"), PARAMS)

    assert result.outcome is Outcome.OK
    assert result.after == {"status": 200, "response": '{"flushed": true}', "attempts": 1}
    (seen,) = peer.seen("/flush")
    assert seen.body == {"service": "shop", "reason": "CacheStale", "n": 1}
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-Token"] == "t"
    assert seen.headers["X-Remediator-Run-Id"] == "run-7"
    assert seen.headers["Idempotency-Key"].startswith("run-7-flush-")


async def test_retries_on_503_with_the_same_idempotency_key(
    peer: Peer, session: aiohttp.ClientSession
) -> None:
    url = peer.answer("/flush", Reply(503), Reply(503), Reply(200))

    result = await HttpCall().run(ctx(endpoints(session, flush=url)), call("flush"), PARAMS)

    assert result.outcome is Outcome.OK
    assert result.after["attempts"] == 3
    keys = {s.headers["Idempotency-Key"] for s in peer.seen("/flush")}
    assert len(peer.seen("/flush")) == 3
    assert len(keys) == 1


async def test_two_steps_of_one_run_with_the_same_body_carry_their_own_keys(
    peer: Peer, session: aiohttp.ClientSession
) -> None:
    # A run step and an on_failed step POST the same body: a receiver that deduplicates on
    # the key must take both; one step sent twice (a retry) keeps its key.
    url = peer.answer("/flush", Reply(200), Reply(200), Reply(200))
    client = endpoints(session, flush=url)
    steps = [
        dataclasses.replace(ctx(client), step=0, phase="run"),
        dataclasses.replace(ctx(client), step=0, phase="on_failed"),
        dataclasses.replace(ctx(client), step=0, phase="on_failed"),
    ]

    for step in steps:
        assert (await HttpCall().run(step, call("flush"), PARAMS)).outcome is Outcome.OK

    run_key, failed_key, again = (s.headers["Idempotency-Key"] for s in peer.seen("/flush"))
    assert run_key != failed_key
    assert failed_key == again
    assert run_key.startswith("run-7.run.0-flush-")
    assert failed_key.startswith("run-7.on_failed.0-flush-")


async def test_429_waits_as_long_as_retry_after_says(
    peer: Peer, session: aiohttp.ClientSession
) -> None:
    url = peer.answer("/flush", Reply(429, headers={"Retry-After": "1"}), Reply(200))

    result = await HttpCall().run(ctx(endpoints(session, flush=url)), call("flush"), PARAMS)

    assert result.outcome is Outcome.OK
    first, second = peer.seen("/flush")
    assert second.at - first.at >= 0.95


async def test_a_retry_after_past_the_cap_gives_up_at_once(
    peer: Peer, session: aiohttp.ClientSession
) -> None:
    url = peer.answer("/flush", Reply(429, headers={"Retry-After": "120"}))

    with pytest.raises(TransientActionError, match="retry after 120s, more than the 5s cap") as e:
        await HttpCall().run(ctx(endpoints(session, flush=url)), call("flush"), PARAMS)
    assert len(peer.seen("/flush")) == 1
    assert not e.value.may_have_acted  # throttled: the endpoint did not take it


@pytest.mark.parametrize("header", ["١٢٠", "²", "Mon, 01 Jan 99999999999 00:00:00 GMT"])
async def test_a_retry_after_not_in_ascii_digits_is_no_delay(
    peer: Peer, session: aiohttp.ClientSession, header: str
) -> None:
    """Retry-After is ASCII digits or an HTTP date: Arabic-Indic 120 was read as 120 s (past
    the cap: given up at once), a superscript two raised ValueError out of the action, and a
    date whose year no calendar holds OverflowError."""
    url = peer.answer("/flush", Reply(503, headers={"Retry-After": header}), Reply(200))

    result = await HttpCall().run(ctx(endpoints(session, flush=url)), call("flush"), PARAMS)

    assert result.outcome is Outcome.OK
    assert len(peer.seen("/flush")) == 2


async def test_exhausted_retries_say_how_it_ended(
    peer: Peer, session: aiohttp.ClientSession
) -> None:
    url = peer.answer("/flush", Reply(502, "bad gateway"))

    with pytest.raises(TransientActionError, match="gave up after 3 attempts: HTTP 502") as e:
        await HttpCall().run(ctx(endpoints(session, flush=url)), call("flush"), PARAMS)
    assert len(peer.seen("/flush")) == 3
    assert e.value.may_have_acted  # a 5xx may come after the endpoint acted, in part


@pytest.mark.parametrize("status", [400, 401, 404, 409, 422])
async def test_no_retry_on_4xx(peer: Peer, session: aiohttp.ClientSession, status: int) -> None:
    url = peer.answer("/flush", Reply(status, "no such cache"))

    with pytest.raises(ActionRefused, match=f"HTTP {status}: no such cache") as e:
        await HttpCall().run(ctx(endpoints(session, flush=url)), call("flush"), PARAMS)
    assert len(peer.seen("/flush")) == 1
    assert not e.value.may_have_acted


async def test_a_slow_endpoint_times_out_and_is_retried(
    peer: Peer, session: aiohttp.ClientSession
) -> None:
    url = peer.answer("/slow", Reply(200, delay=1.0))
    policy = HttpPolicy(timeout=0.2, attempts=2, initial_wait=0.01, max_wait=0.01)
    client = endpoints(session, slow=Endpoint("slow", url, policy=policy))

    with pytest.raises(TransientActionError, match="gave up after 2 attempts: timed out") as e:
        await HttpCall().run(ctx(client), call("slow"), PARAMS)
    assert len(peer.seen("/slow")) == 2
    assert e.value.may_have_acted  # both arrived; their answers never came in time


async def test_a_refusal_after_a_try_that_timed_out_may_have_acted(
    peer: Peer, session: aiohttp.ClientSession
) -> None:
    # The first try arrives and is not answered in time; the retry is refused (the endpoint
    # already took that key, say): the first may well have acted.
    url = peer.answer("/slow", Reply(200, delay=1.0), Reply(409, "duplicate key"))
    policy = HttpPolicy(timeout=0.2, attempts=2, initial_wait=0.01, max_wait=0.01)
    client = endpoints(session, slow=Endpoint("slow", url, policy=policy))

    with pytest.raises(ActionRefused, match="HTTP 409: duplicate key") as e:
        await HttpCall().run(ctx(client), call("slow"), PARAMS)
    assert len(peer.seen("/slow")) == 2
    assert e.value.may_have_acted


@pytest.mark.parametrize(("status", "processed"), [(302, True), (303, True), (307, False)])
async def test_redirects_are_not_followed(
    peer: Peer, session: aiohttp.ClientSession, status: int, processed: bool
) -> None:
    elsewhere = peer.url("/elsewhere")
    url = peer.answer("/flush", Reply(status, headers={"Location": elsewhere}))

    with pytest.raises(ActionRefused, match="redirect") as e:
        await HttpCall().run(ctx(endpoints(session, flush=url)), call("flush"), PARAMS)
    assert peer.seen("/elsewhere") == []
    assert len(peer.seen("/flush")) == 1
    # A 303 (or 301, 302) is how a server answers a POST it processed: the step may have acted.
    assert e.value.may_have_acted is processed
    assert ("may have processed the request" in e.value.message) is processed


async def test_an_endpoint_not_configured_is_refused_and_nothing_is_sent(
    peer: Peer, session: aiohttp.ClientSession
) -> None:
    url = peer.answer("/flush")

    with pytest.raises(ActionRefused, match=r"no HTTP endpoint named .purge.*configured: flush"):
        await HttpCall().run(ctx(endpoints(session, flush=url)), call("purge"), PARAMS)
    assert peer.requests == []


async def test_dry_run_sends_nothing(peer: Peer, session: aiohttp.ClientSession) -> None:
    url = peer.answer("/flush")

    result = await HttpCall().run(
        ctx(endpoints(session, flush=url), dry_run=True), call("flush"), PARAMS
    )

    assert result.outcome is Outcome.DRY_RUN
    assert "endpoint 'flush'" in result.message
    assert peer.requests == []


async def test_a_refused_connection_is_retried_then_reported_without_the_url(
    session: aiohttp.ClientSession,
) -> None:
    # Nothing listens on port 9 (discard) of the loopback: every connect is refused.
    client = endpoints(session, down="http://127.0.0.1:9/secret-path/abc")

    with pytest.raises(ActionError) as caught:
        await HttpCall().run(ctx(client), call("down"), PARAMS)
    assert "gave up after 3 attempts" in caught.value.message
    assert "secret-path" not in caught.value.message
    assert not caught.value.may_have_acted  # no connection was ever made: nothing was sent
