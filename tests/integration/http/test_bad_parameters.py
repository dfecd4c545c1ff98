"""Bad parameters are 400s naming them, never 500s, on every route of the real application
(approvals included), over real HTTP on the real store:

- U+0000 in any query parameter (PostgreSQL's text cannot hold it), and in any string of an
  operator route's JSON body; a ``since`` that overflows a datetime or leaves the years 1 to 9999
  in UTC; a reason over 1000 characters.
- Odd values, a parameter given twice, %-escapes that are not UTF-8, a ``limit`` that is not
  ASCII digits.
- Path parameters that are no id are 404s.

Credentials on the approvals API: test_approvals_credentials.py; a store that is down:
test_routes_store_down.py.
"""

from __future__ import annotations

import asyncio
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis.asyncio
from aiohttp import ClientResponse
from click.testing import CliRunner

from receiver.cli import main
from receiver.guards.policy import GuardSettings
from receiver.guards.redis_guards import Guards
from receiver.http.approvals import APPROVALS_API
from receiver.model import NamespacePolicy
from tests.integration.http.conftest import Edge, MakeEdge
from tests.support.http import ALICE, OPERATOR, MakeClient, _headers

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


# Every query parameter any route reads (and some none does): each gets a NUL.
PARAMETERS = (
    "alertname",
    "rule",
    "target",
    "outcome",
    "since",
    "limit",
    "cursor",
    "state",
    "fingerprint",
    "skipped",
    "kind",
    "run_id",
    "run",
    "nonsense",
)


BAD_SINCE = (
    "99999999999h",
    "9" * 400 + "w",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "0000-06-01T00:00:00Z",
)


BAD_IDS = ("%00", "not-an-id", "9" * 30, "%C3%A9%00x")


def _get_routes(edge: Edge) -> list[str]:
    """The canonical path of every GET route the application has."""
    return sorted(
        {
            route.resource.canonical
            for route in edge.client.app.router.routes()
            if route.method == "GET" and route.resource is not None
        }
    )


async def _refused(response: ClientResponse, parameter: str, error: str | None = None) -> bool:
    """The 400 naming ``parameter`` (and saying ``error``, when given): the API's JSON, or a
    page's text (an approval link's page answers with its error page), which says ``error``
    (``{parameter} must not contain U+0000 (NUL)`` when None)."""
    if response.status != 400:
        return False
    if response.content_type == "text/html":
        said = error or f"{parameter} must not contain U+0000 (NUL)"
        return said in unescape(await response.text())
    body = await response.json()
    return body.get("parameter") == parameter and error in (None, body.get("error"))


async def _shown(response: ClientResponse) -> Any:
    """What a failure shows of the answer: its JSON, or its page's text."""
    if response.content_type == "application/json":
        return await response.json()
    return (await response.text())[:200]


def _fill(canonical: str, value: str) -> str:
    for name in ("{run_id}", "{id}", "{approval_id}", "{token}"):
        canonical = canonical.replace(name, value)
    return canonical


async def test_every_get_route_answers_bad_parameters_with_400_naming_them(
    make_edge: MakeEdge,
) -> None:
    edge = await make_edge()
    await edge.env.pending_run()
    routes = _get_routes(edge)
    assert {"/api/v1/runs", "/api/v1/events", "/api/v1/jobs", APPROVALS_API} <= set(routes)
    wrong: list[str] = []
    for canonical in routes:
        path = _fill(canonical, "x")
        cases = [(name, f"{quote(name)}=%00") for name in PARAMETERS]
        cases.append(("\\x00", "%00=x"))
        # Routes that take `since` name it; the others ignore it or call it unknown: no 500.
        takes_since = canonical in ("/api/v1/runs", APPROVALS_API)
        cases += [("since", f"since={quote(value)}") for value in BAD_SINCE]
        for parameter, query in cases:
            response = await edge.client.get(f"{path}?{query}", headers=_headers(path))
            named = await _refused(response, parameter)
            if query.startswith("since=") and not takes_since:
                named = response.status < 500
            if not named:
                wrong.append(f"GET {path}?{query[:40]}: {response.status} {await _shown(response)}")
    assert wrong == [], "\n".join(wrong)


# Values of the right text but the wrong shape: no id, a negative, a long number, non-ASCII.
ODD_VALUES = ("zz", "-1", "9" * 400, "\u00e9", "1.5", " ")


async def test_every_get_route_answers_odd_values_of_every_parameter_without_a_5xx(
    make_edge: MakeEdge,
) -> None:
    """A value the store would refuse (``run=zz`` was a DataError, a 500) is the route's 400
    naming the parameter, or a value it ignores: never a 5xx."""
    edge = await make_edge()
    await edge.env.pending_run()
    wrong: list[str] = []
    for canonical in _get_routes(edge):
        path = _fill(canonical, "x")
        for name in PARAMETERS:
            for value in ODD_VALUES:
                query = f"{quote(name)}={quote(value)}"
                response = await edge.client.get(f"{path}?{query}", headers=_headers(path))
                if response.status >= 500:
                    wrong.append(f"GET {path}?{query[:40]}: {response.status}")
    assert wrong == [], "\n".join(wrong)
    for path, name in ((f"{APPROVALS_API}?run=zz", "run"), ("/api/v1/jobs?run_id=zz", "run_id")):
        response = await edge.client.get(path, headers=_headers(path))
        assert response.status == 400, path
        assert (await response.json())["parameter"] == name


async def test_every_get_route_refuses_a_parameter_given_twice(make_edge: MakeEdge) -> None:
    """``?limit=5&limit=500``: which one counts would be a guess (the first did), and no route
    takes a list, so each says which parameter to give once."""
    edge = await make_edge()
    wrong: list[str] = []
    for canonical in _get_routes(edge):
        path = _fill(canonical, "x")
        for name in ("limit", "rule", "nonsense"):
            response = await edge.client.get(f"{path}?{name}=1&{name}=2", headers=_headers(path))
            if not await _refused(response, name, f"{name} is given more than once: give it once"):
                shown = await _shown(response)
                wrong.append(f"GET {path}?{name}=1&{name}=2: {response.status} {shown}")
    assert wrong == [], "\n".join(wrong)


# %-escapes of bytes that are not UTF-8 (a page read as latin-1 sends `caf%e9`), and the
# parameter each names.
NOT_UTF8 = (
    ("rule=caf%e9", "rule"),
    ("state=%ff", "state"),
    ("alertname=%c3", "alertname"),
    ("limit=5&target=%80x", "target"),
    ("caf%e9=1", "query"),
)


async def test_every_get_route_refuses_a_query_that_is_not_utf8_naming_the_parameter(
    make_edge: MakeEdge,
) -> None:
    """aiohttp reads each such byte as U+FFFD: ``/api/v1/runs?rule=caf%e9`` matched nothing (an
    empty 200, as if the rule had no runs) and ``approvals?state=%ff`` echoed '\ufffd', a
    value nobody sent."""
    edge = await make_edge()
    await edge.env.pending_run()
    wrong: list[str] = []
    for canonical in _get_routes(edge):
        path = _fill(canonical, "x")
        for query, name in NOT_UTF8:
            response = await edge.client.get(f"{path}?{query}", headers=_headers(path))
            expected = f"{name} is not valid UTF-8 once its %-escapes are decoded"
            if not await _refused(response, name, expected):
                wrong.append(f"GET {path}?{query}: {response.status} {await _shown(response)}")
    assert wrong == [], "\n".join(wrong)
    # The same text, sent as UTF-8, is a value like any other.
    response = await edge.client.get("/api/v1/runs?rule=caf%C3%A9", headers=OPERATOR)
    assert (response.status, (await response.json())["runs"]) == (200, [])


# What int() reads as a number and no caller means by one: a full-width digit, an underscore,
# spaces, a plus sign.
LOOSE_INTEGERS = ("\uff15", "1_0", " 5", "5 ", "+5", "\u0663")


async def test_every_paging_route_reads_limit_as_ascii_digits_only(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    wrong: list[str] = []
    for path in ("/api/v1/runs", "/api/v1/events", "/api/v1/jobs", APPROVALS_API):
        for value in LOOSE_INTEGERS:
            query = f"limit={quote(value)}"
            response = await edge.client.get(f"{path}?{query}", headers=_headers(path))
            body = await response.json()
            if response.status != 400 or body.get("parameter") != "limit":
                wrong.append(f"GET {path}?{query}: {response.status} {body}")
        response = await edge.client.get(f"{path}?limit=5", headers=_headers(path))
        if response.status != 200:
            wrong.append(f"GET {path}?limit=5: {response.status}")
    assert wrong == [], "\n".join(wrong)


async def test_every_path_parameter_that_is_no_id_is_404_never_500(make_edge: MakeEdge) -> None:
    edge = await make_edge()
    wrong: list[str] = []
    for canonical in _get_routes(edge):
        if "{" not in canonical:
            continue
        for value in BAD_IDS:
            path = _fill(canonical, value)
            response = await edge.client.get(path, headers=_headers(path))
            if response.status not in (400, 403, 404):
                wrong.append(f"GET {path}: {response.status}")
    assert wrong == [], "\n".join(wrong)


async def test_the_cli_reports_a_since_out_of_range_as_the_servers_400(
    make_client: MakeClient, tmp_path: Path
) -> None:
    client = await make_client()
    token = tmp_path / "token"
    token.write_text(OPERATOR["Authorization"].removeprefix("Bearer "))
    url = str(client.make_url("")).rstrip("/")

    def runs(since: str) -> Any:
        env = {"REMEDIATOR_OPERATOR_TOKEN_FILE": str(token)}
        return CliRunner().invoke(main, ["runs", "--url", url, "--since", since], env=env)

    for since in BAD_SINCE:
        result = await asyncio.to_thread(runs, since)
        assert result.exit_code == 1, result.output
        assert "HTTP 400 (--since)" in result.stderr, result.stderr


async def test_a_since_in_year_0_is_read_as_intake_reads_it(make_edge: MakeEdge) -> None:
    """RFC 3339 allows year 0 and Go writes it; intake reads it (receiver/alertmanager.py). A
    ``since`` in year 0 was '... is neither an RFC 3339 timestamp nor a duration like 24h', even
    when it is in year 1 in UTC; now it is read, and refused only when before the year 1 in
    UTC, saying so."""
    edge = await make_edge()
    await edge.env.pending_run()
    for route, listed in (("/api/v1/runs", "runs"), (APPROVALS_API, "approvals")):
        since = quote("0000-12-31T23:30:00-01:00")  # 0001-01-01T00:30:00Z
        response = await edge.client.get(f"{route}?since={since}", headers=_headers(route))
        assert response.status == 200, await response.text()
        assert len((await response.json())[listed]) == 1
        since = "0000-06-01T00:00:00Z"
        response = await edge.client.get(f"{route}?since={since}", headers=_headers(route))
        assert response.status == 400
        assert await response.json() == {
            "error": f"'{since}' is outside the years 1 to 9999 once in UTC",
            "parameter": "since",
        }


@pytest.fixture
async def guards(redis_client: redis.asyncio.Redis) -> Guards:
    return Guards(redis_client, NamespacePolicy(), GuardSettings())


async def test_nul_a_surrogate_or_an_overlong_reason_in_a_body_is_400_naming_the_field(
    make_client: MakeClient, make_edge: MakeEdge, guards: Guards
) -> None:
    client = await make_client(guards=guards)
    edge = await make_edge()
    _, approval = await edge.env.pending_run()
    # The body is checked before the id is looked up: any id will do.
    event_id = 1
    posts = [
        (client, "PUT", "/api/v1/pause", {"for": "1m"}, OPERATOR),
        (client, "POST", f"/api/v1/events/{event_id}/retry", {}, OPERATOR),
        (client, "POST", f"/api/v1/events/{event_id}/drop", {}, OPERATOR),
        (edge.client, "POST", f"{APPROVALS_API}/{approval.id}/approve", {}, ALICE),
        (edge.client, "POST", f"{APPROVALS_API}/{approval.id}/reject", {}, ALICE),
    ]
    wrong: list[str] = []
    for http, method, path, body, headers in posts:
        for reason, expected in (
            ("stop\x00now", "reason"),
            ("x" * 1001, "reason"),
            ({"nested": ["a\x00"]}, "reason.nested.0"),
            # A lone surrogate (`\ud800` in the JSON) cannot be encoded to store: was a 500.
            ("stop\ud800now", "reason"),
            ({"nested": ["a\udfff"]}, "reason.nested.0"),
        ):
            response = await http.request(
                method, path, json={**body, "reason": reason}, headers=headers
            )
            answer = await response.json()
            if (response.status, answer.get("field")) != (400, expected):
                wrong.append(f"{method} {path} reason={str(reason)[:20]!r}: {answer}")
        for key in ("note\x00", "note\ud800"):
            extra = await http.request(
                method, path, json={**body, "reason": "ok", key: 1}, headers=headers
            )
            if extra.status != 400:
                wrong.append(f"{method} {path} with {key[-1]!r} in a key: {extra.status}")
    assert wrong == [], "\n".join(wrong)
    # Nothing was paused, retried, dropped or decided.
    assert (await guards.status())["paused"] is False
    still = await edge.env.desk.store.get_approval(approval.id)
    assert still is not None
    assert still.state.value == "pending"
    # A thousand characters is fine.
    response = await client.put("/api/v1/pause", json={"reason": "x" * 1000}, headers=OPERATOR)
    assert response.status == 200
    await guards.resume()
