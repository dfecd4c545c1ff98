"""A real ``remediator serve`` with approvals, for the tests that kill it (SIGKILL) around an
approval (tests/integration/test_serve_approval_crash*.py): the test PostgreSQL and Redis
(not the embedded ones, which a SIGKILL would orphan), one rule whose only step is an
``http.call`` that waits for an engineer, and one local HTTP peer that is both the step's
endpoint (``/called``: each POST counted, so "the step acted once" is counted where it lands)
and the approvers' webhook channel (``/notices``).

``Desk`` starts and kills the service on one fixed port (its approval links point there, so a
link sent before a crash is the link used after it); ``Peer`` is the endpoint and the channel;
``LinkClient`` follows a link as a browser does (GET the page, POST its form from the same
origin, with the session cookie the GET set).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from receiver.embedded.process import free_port
from tests.support.daemons import end
from tests.support.peer import answering
from tests.support.polling import current, eventually
from tests.support.served import cli, database_env, env_for, launch

__all__ = [
    "ALERT",
    "CSRF",
    "Desk",
    "LinkClient",
    "Peer",
    "desk",
    "desk_env",
    "fresh_session",
    "running_peer",
]

OPERATOR = "alice"
RULE = """\
rules:
  - name: crash-approval
    match: ['alertname="CrashApproval"']
    target: {kind: HttpEndpoint, name: catcher}
    steps:
      - action: http.call
        params: {body: {said: "{{ annotations.summary }}"}}
        approval: required
"""
ALERT: dict[str, Any] = {
    "version": "4",
    "status": "firing",
    "receiver": "remediator",
    "groupKey": '{}:{alertname="CrashApproval"}',
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "CrashApproval"},
            "annotations": {"summary": "crash around an approval"},
            "startsAt": "2026-12-05T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "",
            "fingerprint": "c4a5c4a5c4a5c4a5",
        }
    ],
}


@dataclass
class Peer:
    """The step's endpoint and the approvers' channel. ``called``: each body the step POSTed
    to ``/called``; while ``hold`` is set, a call is kept unanswered until it is cleared (the
    step acting when the service is killed). ``notices``: each approval notice's JSON."""

    base: str = ""
    called: list[Any] = field(default_factory=list)
    notices: list[dict[str, Any]] = field(default_factory=list)
    hold: asyncio.Event | None = None
    # While ``notice_hold`` is set, a notice is kept unanswered (and not kept) until it is
    # cleared: the channel slow when the service is killed. ``notices_seen`` counts arrivals.
    notice_hold: asyncio.Event | None = None
    notices_seen: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        if request.path == "/notices":
            self.notices_seen += 1
            if self.notice_hold is not None and not self.notice_hold.is_set():
                await self.notice_hold.wait()
                return web.Response(status=204)
            self.notices.append(body)
        elif request.path == "/called":
            self.called.append(body)
            if self.hold is not None:
                await self.hold.wait()
        return web.Response(status=204)

    def kinds(self) -> list[str]:
        return [str(n.get("kind")) for n in self.notices]

    async def request_link(self) -> str:
        """The link of the approval request (waiting for its notice)."""
        notice = await eventually(
            current(lambda: [n for n in self.notices if n.get("kind") == "approval.requested"]),
            what="the approval's request notice",
        )
        link = notice[0]["link"]
        assert isinstance(link, str), notice
        assert "/approve/" in link, notice
        return link


@asynccontextmanager
async def running_peer() -> AsyncIterator[Peer]:
    peer = Peer()
    async with answering(peer.handle) as peer.base:
        yield peer


def _secret(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o600)
    return str(path)


def desk_env(
    base: Path,
    *,
    database_url: str,
    redis_url: str,
    peer: Peer,
    port: int,
    ttl: str = "30m",
    rule: str = RULE,
) -> dict[str, str]:
    """The served environment: the stores, one rule (``rule``: a rules file's text),
    approvals by ``alice`` through links to ``127.0.0.1:port``, notices to ``peer``, approvals
    open for ``ttl``; a claim of a killed worker taken up again 2 s after its lease was last
    kept (not the default minute)."""
    for sub in ("rules", "keys", "operators"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "rules" / "crash.yaml").write_text(rule)
    _secret(base / "keys" / "k1", secrets.token_hex(32))
    _secret(base / "operators" / OPERATOR, "alice-" + secrets.token_hex(16))
    env = env_for(base / "data")
    channels = {
        "catcher": {
            "kind": "webhook",
            "url_file": _secret(base / "notices-url", peer.base + "/notices"),
        }
    }
    env.update(
        REMEDIATOR_DATABASE_URL=database_url,
        REMEDIATOR_REDIS_URL=redis_url,
        REMEDIATOR_WEBHOOK_TOKEN_FILE=_secret(base / "webhook-token", secrets.token_hex(24)),
        REMEDIATOR_OPERATOR_TOKENS_DIR=str(base / "operators"),
        REMEDIATOR_RULES_DIR=str(base / "rules"),
        REMEDIATOR_EXTERNAL_URL=f"http://127.0.0.1:{port}",
        REMEDIATOR_APPROVAL_KEYS_DIR=str(base / "keys"),
        REMEDIATOR_APPROVERS_FILE=_secret(base / "approvers.yaml", f"default: [{OPERATOR}]\n"),
        REMEDIATOR_APPROVAL_NOTIFY_CHANNEL="catcher",
        REMEDIATOR_APPROVAL_TTL=ttl,
        REMEDIATOR_NOTIFY_CHANNELS=json.dumps(channels),
        REMEDIATOR_HTTP_ENDPOINTS=json.dumps({"catcher": {"url": peer.base + "/called"}}),
        REMEDIATOR_WORKER_LEASE="2s",
    )
    return env


@dataclass
class Desk:
    """One served service at a time on ``port``, restarted on the same stores and port."""

    env: dict[str, str]
    port: int
    database_url: str
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def operator_token(self) -> str:
        return Path(self.env["REMEDIATOR_OPERATOR_TOKENS_DIR"], OPERATOR).read_text()

    @property
    def webhook_token(self) -> str:
        return Path(self.env["REMEDIATOR_WEBHOOK_TOKEN_FILE"]).read_text()

    async def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "still running"
        self.proc, url, self.output = await asyncio.to_thread(launch, self.env, port=self.port)
        assert url == self.url, url

    def kill(self) -> None:
        """SIGKILL, as a crash or the OOM killer ends it: no cleanup of any kind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(60)

    def stop(self) -> None:
        if self.proc is not None:
            end(self.proc, 60)

    def log(self) -> str:
        return "".join(self.output[-80:])

    async def post_alert(
        self, session: aiohttp.ClientSession, alert: dict[str, Any] | None = None
    ) -> None:
        """Post ``alert`` (a notification; ``ALERT`` by default) with the webhook's token."""
        headers = {"Authorization": f"Bearer {self.webhook_token}"}
        body = ALERT if alert is None else alert
        async with session.post(f"{self.url}/api/v1/alerts", json=body, headers=headers) as r:
            assert r.status == 200, await r.text()

    async def api(self, session: aiohttp.ClientSession, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.operator_token}"}
        async with session.get(f"{self.url}{path}", headers=headers) as r:
            assert r.status == 200, f"GET {path}: {r.status} {await r.text()}"
            return await r.json()

    async def only_run(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """The one run there is, with its steps and audit trail."""
        runs = (await self.api(session, "/api/v1/runs"))["runs"]
        assert len(runs) == 1, runs
        body = await self.api(session, f"/api/v1/runs/{runs[0]['id']}")
        return {**body["run"], "audit": body["audit"]}

    async def run_ended(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        """The one run, once its outcome is no longer pending, running or awaiting."""
        open_outcomes = ("pending", "running", "awaiting_approval")
        return await eventually(
            lambda: self.only_run(session),
            lambda run: run["outcome"] not in open_outcomes,
            what="the run ended",
        )

    async def audit_verified(self) -> str:
        code, out, err = await cli(database_env(self.database_url), "audit", "verify")
        assert code == 0, f"audit verify: exit {code}\n{out}\n{err}"
        return out


@asynccontextmanager
async def desk(
    base: Path,
    *,
    database_url: str,
    redis_url: str,
    peer: Peer,
    ttl: str = "30m",
    rule: str = RULE,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Desk]:
    """A ``Desk`` on a free port (``desk_env``, and ``env`` added), not started; stopped at
    the end (SIGTERM, then SIGKILL)."""
    port = free_port()
    env = {
        **desk_env(
            base,
            database_url=database_url,
            redis_url=redis_url,
            peer=peer,
            port=port,
            ttl=ttl,
            rule=rule,
        ),
        **(env or {}),
    }
    served = Desk(env, port, database_url)
    try:
        yield served
    finally:
        served.stop()


CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class LinkClient:
    """A browser following an approval link: its own cookie jar, the page's form sent back
    from the service's origin with the operator's token."""

    def __init__(self, session: aiohttp.ClientSession, link: str, origin: str) -> None:
        self._session = session
        self.link = link
        self._origin = origin

    async def open(self) -> tuple[int, str]:
        async with self._session.get(self.link) as r:
            return r.status, await r.text()

    async def csrf(self) -> str:
        status, html = await self.open()
        assert status == 200, html
        found = CSRF.search(html)
        assert found, html
        return found.group(1)

    async def approve(
        self, csrf: str, operator_token: str, decision: str = "approve"
    ) -> tuple[int, str]:
        """Send the page's form (``decision``: approve or reject); the status and the page."""
        form = {"decision": decision, "operator_token": operator_token, "csrf": csrf}
        headers = {"Origin": self._origin}
        async with self._session.post(self.link, data=form, headers=headers) as r:
            return r.status, await r.text()


def fresh_session() -> aiohttp.ClientSession:
    """A client keeping cookies for 127.0.0.1, with a new connection per request: a request
    to a killed service meets a refused connection, not a kept-alive one cut off."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=30),
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        connector=aiohttp.TCPConnector(force_close=True),
    )
