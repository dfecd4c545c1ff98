"""What no record can hold never fails an alert's event: U+0000 (PostgreSQL's text and jsonb
refuse it) in an HTTP answer, or in what a template renders over the alert. Against a real local
HTTP server, on real PostgreSQL and Redis, the alert in through intake.

An answer's excerpt, which goes into the step's record and the announcement's audit row, writes
it ``\\x00``: before, the record failed on every retry of the event, an http.call answered 200
was recorded ``interrupted``, a notify step was sent again at each retry, and the event ended
dead. A template that renders it fails, naming the template (the ``template`` guard refuses an
http.call's run; a notification is undelivered): before, the approval's preview or the
notification's recorded text failed the event until dead, and the alert's other rules, planned
after it, never ran.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from remediations.http.endpoints import Endpoint, HttpEndpoints
from remediations.http.post import HttpPolicy
from remediations.notify.notifier import Channel, ChannelKind, Notifier
from tests.support.peer import Peer, Reply, peer
from tests.support.pipeline import MakeHarness

__all__ = ["peer"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

RULES = """\
rules:
  - name: flush
    match: ['alertname="CacheStale"']
    target: {kind: HttpEndpoint, name: flush}
    steps:
      - action: http.call
        params: {body: {service: "{{ labels.service }}"}}
        approval: never
    notify: {channel: oncall}
  - name: tell
    match: ['alertname="CacheStale"']
    target: {kind: Deployment, namespace: shop, name: "{{ labels.service }}"}
    steps:
      - action: notify
        params: {channel: oncall, message: "cache of {{ labels.service }} is stale"}
"""
LABELS = {"alertname": "CacheStale", "service": "web"}
FLUSH, HOOK = "/flush", "/hooks/oncall"
QUICK = HttpPolicy(timeout=2.0, attempts=1, initial_wait=0.01, max_wait=0.01, max_retry_after=1)
NUL_ANSWER = 'bad\x00request {"x": "\\u0000"}'


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as created:
        yield created


@pytest.mark.parametrize("status", [200, 400])
async def test_an_answer_holding_nul_is_recorded_once_and_the_event_is_done(
    make_harness: MakeHarness, session: aiohttp.ClientSession, peer: Peer, status: int
) -> None:
    peer.answer(FLUSH, Reply(status, NUL_ANSWER))
    peer.answer(HOOK, Reply(400, NUL_ANSWER))
    endpoints = HttpEndpoints({"flush": Endpoint("flush", peer.url(FLUSH), {}, QUICK)}, session)
    notifier = Notifier(
        {"oncall": Channel("oncall", ChannelKind.WEBHOOK, peer.url(HOOK), QUICK)}, session
    )
    h = await make_harness(RULES, clients={"http": endpoints, "notify": notifier}, dry_run=False)

    await h.deliver(LABELS)  # asserts nothing is left queued: the event is done, not retried

    runs = {r.rule: await h.store.get_run(r.id) for r in await h.runs()}
    flush, tell = runs["flush"], runs["tell"]
    assert flush is not None
    assert tell is not None
    (called,) = flush.steps
    if status == 200:
        assert called.outcome == "ok"
        assert called.after is not None
        assert called.after["response"] == 'bad\\x00request {"x": "\\u0000"}'
    else:
        assert called.outcome == "refused"
        assert "HTTP 400: bad\\x00request" in called.message
    (told,) = tell.steps
    assert told.outcome == "undelivered"
    assert "HTTP 400: bad\\x00request" in told.message
    # Each sent once: no retry of the event sent the endpoint or the channel anything again.
    assert len(peer.seen(FLUSH)) == 1
    step_messages = [r for r in peer.seen(HOOK) if r.body["event"] == "step"]
    assert len(step_messages) == 1


# The first rule's step renders the alert's `code` as a character: "0" makes it U+0000, which
# neither an approval's preview of the body nor a notification's recorded text can hold.
FIRST_RULES = {
    "flush": """\
  - name: flush
    match: ['alertname="CacheStale"']
    target: {kind: HttpEndpoint, name: flush}
    steps:
      - action: http.call
        params: {body: {note: '{{ "%c" | format(labels.code | int) }}'}}
""",
    "tell": """\
  - name: tell
    match: ['alertname="CacheStale"']
    target: {kind: Deployment, namespace: shop, name: "{{ labels.service }}"}
    steps:
      - action: notify
        params: {channel: oncall, message: '{{ "%c" | format(labels.code | int) }}'}
""",
}
RESTART = """\
  - name: restart
    match: ['alertname="CacheStale"']
    target: {kind: Deployment, namespace: shop, name: "{{ labels.service }}"}
    steps:
      - action: kubernetes.rollout_restart
"""


@pytest.mark.parametrize("first", sorted(FIRST_RULES))
async def test_a_step_rendering_nul_says_so_and_the_other_rule_still_runs(
    make_harness: MakeHarness, session: aiohttp.ClientSession, peer: Peer, first: str
) -> None:
    # Before, the first rule's record failed on every retry of the event until it was dead,
    # and `restart`, planned after it, never ran.
    endpoints = HttpEndpoints({"flush": Endpoint("flush", peer.url(FLUSH), {}, QUICK)}, session)
    notifier = Notifier(
        {"oncall": Channel("oncall", ChannelKind.WEBHOOK, peer.url(HOOK), QUICK)}, session
    )
    h = await make_harness(
        "rules:\n" + FIRST_RULES[first] + RESTART,
        clients={"http": endpoints, "notify": notifier},
        dry_run=False,
    )

    await h.deliver({**LABELS, "code": "0"})  # nothing left queued: the event is done

    runs = {r.rule: r for r in await h.runs()}
    if first == "flush":  # refused by the template guard before anything is asked or sent
        assert runs[first].outcome == "refused"
        assert runs[first].refusal_guard == "template"
        assert "renders U+0000 (NUL)" in (runs[first].refusal_reason or "")
    else:  # a notification that cannot be rendered never fails its run
        run = await h.store.get_run(runs[first].id)
        assert run is not None
        (step,) = run.steps
        assert step.outcome == "undelivered"
        assert "renders U+0000 (NUL)" in step.message
    assert runs["restart"].outcome == "dry_run"
    assert peer.seen(FLUSH) == []
    assert [r.body["event"] for r in peer.seen(HOOK)] == []
