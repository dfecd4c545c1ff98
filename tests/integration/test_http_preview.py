"""The plan an approver approves for ``http.call`` describes the request sent, byte for byte:
the preview counts the bytes that go on the wire. Against a local aiohttp server recording the
raw request."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from receiver.approvals.plan import bound_plan, plan_hash
from remediations.base import ActionContext, ActionRefused, AlertFacts, Clients
from remediations.http.endpoints import Endpoint, HttpCall, HttpCallParams, HttpEndpoints
from remediations.http.post import HttpPolicy, json_body
from remediations.targets import Target
from tests.support.peer import answering

# Non-ASCII, spaces after separators and nesting: each is sized differently by the default
# json.dumps (escapes, ", " and ": ") than by what is sent.
ALERT = AlertFacts(labels={"alertname": "Flüsse", "pod": "wéb-0 ☃"}, status="firing")
PARAMS = HttpCallParams.model_validate(
    {
        "body": {
            "reason": "{{ labels.alertname }} on {{ labels.pod }}",
            "nested": {"a": [1, 2, "drei"], "b": None},
            "note": "café",
        }
    }
)


@pytest.fixture
async def received() -> AsyncIterator[tuple[str, list[tuple[int | None, bytes]]]]:
    seen: list[tuple[int | None, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        seen.append((request.content_length, await request.read()))
        return web.Response(text="ok")

    async with answering(record) as base:
        yield base, seen


async def test_the_preview_counts_and_holds_the_bytes_that_are_sent(
    received: tuple[str, list[tuple[int | None, bytes]]],
) -> None:
    base, seen = received
    async with aiohttp.ClientSession() as session:
        policy = HttpPolicy(timeout=2.0, attempts=1)
        client = HttpEndpoints({"sink": Endpoint("sink", f"{base}/sink", {}, policy)}, session)
        ctx = ActionContext("run-9", False, Clients({"http": client}), rule="r", alert=ALERT)
        target = Target("HttpEndpoint", "", "sink")

        change = await HttpCall().preview(ctx, target, PARAMS)
        await HttpCall().run(ctx, target, PARAMS)

    [(length, body)] = seen
    match = re.match(r"POST (\d+) bytes of JSON to endpoint 'sink'", change.summary)
    assert match is not None, change.summary
    assert int(match[1]) == length == len(body)
    assert json_body(change.after["body"]) == body


async def test_the_plan_binds_the_whole_destination_and_a_stale_approval_sends_nothing(
    received: tuple[str, list[tuple[int | None, bytes]]],
) -> None:
    """An endpoint reconfigured between the approval request and the click (another path,
    query or header value) is another plan: its hash differs, so the pipeline supersedes the
    approval, and run() refuses one approved on the old configuration. The plan shows the
    origin only: the path, the query and the headers may hold secrets."""
    base, seen = received
    target = Target("HttpEndpoint", "", "sink")
    policy = HttpPolicy(timeout=2.0, attempts=1)
    configurations = {
        "as approved": Endpoint("sink", f"{base}/sink", {"X-Token": "s3cret-one"}, policy),
        "another path": Endpoint("sink", f"{base}/other?x=1", {"X-Token": "s3cret-one"}, policy),
        "another header": Endpoint("sink", f"{base}/sink", {"X-Token": "s3cret-two"}, policy),
        "one header more": Endpoint(
            "sink", f"{base}/sink", {"X-Token": "s3cret-one", "X-Also": "1"}, policy
        ),
    }
    plans = {}
    async with aiohttp.ClientSession() as session:
        for name, endpoint in configurations.items():
            client = HttpEndpoints({"sink": endpoint}, session)
            ctx = ActionContext("run-9", False, Clients({"http": client}), rule="r", alert=ALERT)
            change = await HttpCall().preview(ctx, target, PARAMS)
            plans[name] = plan_hash(
                bound_plan(action="http.call", target=target, params={}, change=change)
            )
            shown = json.dumps(dict(change.preconditions))
            assert "s3cret" not in shown
            assert "/sink" not in shown
            assert "/other" not in shown
        assert len(set(plans.values())) == len(plans)

        approved = dict(
            (
                await HttpCall().preview(
                    ActionContext(
                        "run-9",
                        False,
                        Clients(
                            {
                                "http": HttpEndpoints(
                                    {"sink": configurations["as approved"]}, session
                                )
                            }
                        ),
                        rule="r",
                        alert=ALERT,
                    ),
                    target,
                    PARAMS,
                )
            ).preconditions
        )
        now = HttpEndpoints({"sink": configurations["another path"]}, session)
        stale = ActionContext(
            "run-9", False, Clients({"http": now}), rule="r", alert=ALERT, approved=approved
        )
        with pytest.raises(ActionRefused, match="not configured as it was when approved"):
            await HttpCall().run(stale, target, PARAMS)
    assert seen == []
