"""The review over HTTP without a browser: who is let in, what the pages' headers promise, the
report API, and ``remediator report`` against a real server."""

from __future__ import annotations

import asyncio
import html
import os
import re
import sys
from dataclasses import dataclass

import pytest
from aiohttp import ClientResponse

from receiver.review.sessions import SESSION_COOKIE
from receiver.store import Store
from tests.support.approvals import MakeApprovalEnv
from tests.support.http import (
    AUTH,
    OPERATOR,
    OPERATOR_TOKEN,
    AiohttpClient,
    Client,
    default_settings,
)
from tests.support.postgres import PostgresServer
from tests.support.review import STORM_RULES, Storm, play_storm
from tests.support.review_app import review_app


@dataclass
class Served:
    storm: Storm
    client: Client
    incident_id: str


@pytest.fixture
async def served(
    approval_env: MakeApprovalEnv, aiohttp_client: AiohttpClient, store: Store
) -> Served:
    env = await approval_env(rules=STORM_RULES)
    storm = await play_storm(env)
    client = await aiohttp_client(review_app(store, default_settings()))
    response = await client.get("/api/v1/report", headers=OPERATOR, params={"from": "1h"})
    assert response.status == 200
    [incident] = (await response.json())["incidents"]
    return Served(storm, client, incident["id"])


def _pages(served: Served) -> list[str]:
    run = served.storm.runs["api"].id
    return [
        "/runs",
        f"/runs/{run}",
        "/incidents",
        f"/incidents/{served.incident_id}",
        f"/incidents/{served.incident_id}/report.md",
    ]


async def test_every_page_refuses_who_is_not_an_operator(served: Served) -> None:
    client = served.client
    secret = served.storm.runs["api"].id
    refused = [
        {},
        AUTH,  # the webhook credential posts alerts, nothing else
        {"Authorization": "Bearer not-a-token"},
        {"Cookie": f"{SESSION_COOKIE}=forged.value.sig"},
    ]
    for path in _pages(served):
        for headers in refused:
            response = await client.get(path, headers=headers)
            body = await response.text()
            assert response.status == 401, (path, headers)
            assert 'id="operator_token"' in body
            assert secret not in body.split('name="next"')[0], (path, headers)
            assert "restart-web" not in body
        response = await client.get(path, headers=OPERATOR)
        assert response.status == 200, path
    response = await client.get("/api/v1/report")
    assert response.status == 401
    assert (await client.get("/api/v1/report", headers=AUTH)).status == 403


async def test_the_root_leads_to_the_incidents(served: Served) -> None:
    # A new user opening the service's address in a browser got the API's JSON 404.
    client = served.client
    response = await client.get("/", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "incidents")
    followed = await client.get("/")
    assert followed.status == 401
    assert 'id="operator_token"' in await followed.text()
    signed_in = await client.get("/", headers=OPERATOR)
    assert signed_in.status == 200
    assert signed_in.url.path == "/incidents"


async def test_the_root_leads_to_the_incidents_under_the_external_url(
    served: Served, aiohttp_client: AiohttpClient, store: Store
) -> None:
    # Behind a proxy at /review, the browser's "/review" (no trailing slash) reaches the
    # service as "/": the relative "incidents" resolved to "/incidents", outside the prefix.
    for external in ("https://ops.example/review", "https://ops.example/review/"):
        settings = default_settings().model_copy(update={"external_url": external})
        client = await aiohttp_client(review_app(store, settings))
        response = await client.get("/", allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (
            303,
            "https://ops.example/review/incidents",
        )


async def test_the_login_exchanges_a_token_for_a_strict_session_cookie(served: Served) -> None:
    client = served.client
    same_site = {"Sec-Fetch-Site": "same-origin"}
    data = {"operator_token": "wrong", "next": "runs"}
    response = await client.post("/login", data=data, headers=same_site)
    assert response.status == 401
    assert "unknown operator token" in await response.text()
    # The webhook token is no operator's.
    response = await client.post(
        "/login", data={**data, "operator_token": "t0ken-for-tests"}, headers=same_site
    )
    assert response.status == 401
    # From another site: refused before the token is even looked at.
    response = await client.post(
        "/login",
        data={**data, "operator_token": OPERATOR_TOKEN},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert response.status == 403

    run = served.storm.runs["api"].id
    response = await client.post(
        "/login",
        data={"operator_token": OPERATOR_TOKEN, "next": f"runs/{run}"},
        headers=same_site,
        allow_redirects=False,
    )
    assert response.status == 303
    assert response.headers["Location"] == f"./runs/{run}"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    # No Path: the browser scopes it to the directory it was set from (a proxy's prefix).
    assert "path" not in attributes
    value = cookie.split(";")[0].split("=", 1)[1]
    page = await client.get(f"/runs/{run}", headers={"Cookie": f"{SESSION_COOKIE}={value}"})
    assert page.status == 200
    # A redirect target outside the review is not followed, nor one that ends in a line break
    # (a header cannot hold it: the sign-in would end in a dropped connection).
    for elsewhere in (
        "//evil.example/x",
        "https://evil.example/",
        "incidents/../../x",
        "runs\n",
        f"runs/{run}\n",
    ):
        response = await client.post(
            "/login",
            data={"operator_token": OPERATOR_TOKEN, "next": elsewhere},
            headers=same_site,
            allow_redirects=False,
        )
        assert response.headers["Location"] == "./runs", elsewhere


async def test_the_pages_load_nothing_and_link_relatively(served: Served) -> None:
    for path in _pages(served)[:4]:
        response = await served.client.get(path, headers=OPERATOR)
        csp = response.headers["Content-Security-Policy"]
        assert csp.startswith("default-src 'none'; style-src 'nonce-")
        assert "script-src" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["Cache-Control"] == "no-store"
        # same-origin, header and meta: under no-referrer a browser sent the login form with
        # Origin: null, refused as another site's wherever Fetch Metadata is not sent (http).
        assert response.headers["Referrer-Policy"] == "same-origin"
        html = await response.text()
        assert re.findall(r'<meta name="referrer" content="([^"]*)">', html) == ["same-origin"]
        nonce = re.search(r"'nonce-([^']+)'", csp)
        assert nonce is not None
        assert f'<style nonce="{nonce[1]}">' in html
        assert "<script" not in html
        # Every link to the service itself is relative: no absolute path, so a prefix holds.
        internal = [h for h in re.findall(r'(?:href|action)="([^"]*)"', html) if "://" not in h]
        assert internal
        assert all(h.startswith(("./", "../")) for h in internal), (path, internal)


async def test_every_page_is_an_error_page_while_postgres_is_down(
    served: Served, pg_controlled: PostgresServer
) -> None:
    with pg_controlled.stopped(mode="fast"):
        for path in _pages(served):
            response = await served.client.get(path, headers=OPERATOR)
            assert response.status == 503, path
            assert response.content_type == "text/html", path
            assert "cannot reach its store" in await response.text(), path
            assert response.headers["Cache-Control"] == "no-store", path


async def test_the_report_api_checks_its_parameters(served: Served) -> None:
    client = served.client
    for params, parameter in (
        ({"from": "yesterday"}, "from"),
        ({"from": "1h", "to": "2h"}, "to"),
        ({"gap": "forever"}, "gap"),
        ({"gap": "1ms"}, "gap"),
        ({"gap": "0s"}, "gap"),
        ({"group_by": "team"}, "group_by"),
        ({"format": "pdf"}, "format"),
        ({"limit": "3"}, "limit"),
    ):
        response = await client.get("/api/v1/report", headers=OPERATOR, params=params)
        assert response.status == 400, params
        assert (await response.json())["parameter"] == parameter
    response = await client.get(
        "/api/v1/report", headers=OPERATOR, params={"from": "1h", "format": "markdown"}
    )
    assert response.status == 200
    assert (response.content_type, response.charset) == ("text/markdown", "utf-8")
    # The page's headers: never sniffed as HTML, never cached.
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert f"## Incident {served.incident_id}: WebDown" in await response.text()
    response = await client.get(
        "/api/v1/report", headers=OPERATOR, params={"from": "1h", "gap": "1s"}
    )
    assert (await response.json())["window"]["gap_s"] == 1.0


async def test_the_incidents_page_names_a_parameter_it_does_not_take(served: Served) -> None:
    # ?gap=1s was ignored without a word: the page grouped by the default gap all the same.
    for params in ({"gap": "1s"}, {"group_by": "window"}, {"from": "1h", "limit": "3"}):
        response = await served.client.get("/incidents", headers=OPERATOR, params=params)
        assert response.status == 400, params
        name = next(n for n in params if n not in ("from", "to"))
        assert f"unknown parameter &#39;{name}&#39;" in await response.text(), params
    response = await served.client.get("/incidents", headers=OPERATOR, params={"from": "1h"})
    assert response.status == 200
    assert served.incident_id in await response.text()


async def test_the_cli_prints_the_report_of_a_running_server(served: Served) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env["REMEDIATOR_OPERATOR_TOKEN"] = OPERATOR_TOKEN
    url = str(served.client.make_url("")).rstrip("/")
    for fmt, needle in (
        ("markdown", f"## Incident {served.incident_id}: WebDown"),
        ("json", f'"id": "{served.incident_id}"'),
    ):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "receiver.cli",
            "report",
            "--url",
            url,
            "--since",
            "1h",
            "--format",
            fmt,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert needle in out.decode()


# Queries no route takes (the shared check), and the message each page shows.
BAD_QUERIES = (
    ("since=24h&since=1h", "since is given more than once: give it once"),
    ("rule=caf%e9", "rule is not valid UTF-8 once its %-escapes are decoded"),
    ("rule=a%00b", "rule must not contain U+0000 (NUL)"),
)


async def test_every_page_answers_a_bad_query_with_a_page(served: Served) -> None:
    # /runs?since=24h&since=1h got the middleware's JSON 400, a page of raw JSON for whoever
    # followed a link; /runs and /incidents answer with their form and the message, the
    # others with the error page, and the API stays JSON.
    for path in _pages(served):
        for query, message in BAD_QUERIES:
            response = await served.client.get(f"{path}?{query}", headers=OPERATOR)
            assert (response.status, response.content_type) == (400, "text/html"), (path, query)
            body = html.unescape(await response.text())
            assert message in body, (path, query)
            if path in ("/runs", "/incidents"):
                assert "<form" in body, (path, query)
    response = await served.client.get("/api/v1/runs?since=24h&since=1h", headers=OPERATOR)
    assert (response.status, await response.json()) == (
        400,
        {"error": "since is given more than once: give it once", "parameter": "since"},
    )


async def test_the_login_and_logout_answer_a_bad_query_with_the_login_form(
    served: Served,
) -> None:
    # They are pages too: /login?x=1&x=2 got the middleware's JSON 400, raw JSON in a browser.
    same_site = {"Sec-Fetch-Site": "same-origin"}
    form = {"operator_token": OPERATOR_TOKEN, "next": "runs"}
    for query, message in BAD_QUERIES:
        for method, path in (("GET", "/login"), ("POST", "/login"), ("POST", "/logout")):
            response = await served.client.request(
                method,
                f"{path}?{query}",
                data=form if method == "POST" else None,
                headers=same_site,
                allow_redirects=False,
            )
            assert (response.status, response.content_type) == (400, "text/html"), (path, query)
            body = html.unescape(await response.text())
            assert message in body, (path, query)
            assert 'id="operator_token"' in body, (path, query)
            assert "Set-Cookie" not in response.headers, (path, query)  # no sign-in, no sign-out


async def test_a_signed_out_session_is_refused_everywhere_though_its_cookie_is_kept(
    served: Served, aiohttp_client: AiohttpClient, store: Store
) -> None:
    # The cookie is signed, not stored: clearing it in the browser left any copy of it (another
    # tab's, a shared machine's) good for its 12 hours. Sign-out now records it, and every
    # replica on the same store refuses it.
    client = served.client
    kept, other = await _sign_in(client), await _sign_in(client)
    replica = await aiohttp_client(review_app(store, default_settings()))
    for session in (kept, other):
        for serving in (client, replica):
            page = await serving.get("/runs", headers={"Cookie": f"{SESSION_COOKIE}={session}"})
            assert page.status == 200

    response = await _sign_out(client, kept)
    assert response.status == 303
    assert response.cookies[SESSION_COOKIE].value == ""  # the browser forgets it
    client.session.cookie_jar.clear()
    for serving in (client, replica):
        page = await serving.get("/runs", headers={"Cookie": f"{SESSION_COOKIE}={kept}"})
        assert page.status == 401
        assert 'id="operator_token"' in await page.text()
        # The operator's token itself still works, and so does a session not signed out.
        assert (await serving.get("/runs", headers=OPERATOR)).status == 200
        page = await serving.get("/runs", headers={"Cookie": f"{SESSION_COOKIE}={other}"})
        assert page.status == 200
    # Signing out again, with the copy, is harmless.
    assert (await _sign_out(client, kept)).status == 303


async def test_a_session_that_cannot_be_looked_up_is_refused_and_its_sign_out_says_so(
    served: Served, pg_controlled: PostgresServer
) -> None:
    # Whether a cookie was signed out is in the store: with the store away the page is not let
    # in on the cookie's word, and a sign-out that cannot be recorded is not shown as done.
    client = served.client
    session = await _sign_in(client)
    cookie = {"Cookie": f"{SESSION_COOKIE}={session}"}
    with pg_controlled.stopped(mode="fast"):
        page = await client.get("/runs", headers=cookie)
        assert (page.status, page.content_type) == (503, "text/html")
        assert "cannot reach its store to check the session" in await page.text()
        response = await _sign_out(client, session)
        assert response.status == 503
        assert "Set-Cookie" not in response.headers
    assert (await client.get("/runs", headers=cookie)).status == 200


async def _sign_in(client: Client) -> str:
    """A session cookie's value for the operator, the client's jar left empty: each request
    of the tests above names its cookie."""
    response = await client.post(
        "/login",
        data={"operator_token": OPERATOR_TOKEN, "next": "runs"},
        headers={"Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    )
    assert response.status == 303
    value: str = response.cookies[SESSION_COOKIE].value
    client.session.cookie_jar.clear()
    return value


async def _sign_out(client: Client, session: str) -> ClientResponse:
    return await client.post(
        "/logout",
        headers={"Sec-Fetch-Site": "same-origin", "Cookie": f"{SESSION_COOKIE}={session}"},
        allow_redirects=False,
    )
