"""`remediator serve` as a subprocess, as a user (or an attacker) meets it: what reaches its log,
what it says at start-up, and how it refuses to start."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.support.polling import eventually
from tests.support.rawhttp import exchange, status_of
from tests.support.served import ROOT, ServeFactory, env_for, serve_to_exit

# Sent in a malformed Authorization header; never printed by the service itself.
MARKER = "s3cret-bearer-marker-0123456789"


def _shipped_rule_names() -> list[str]:
    """The names of the shipped rules, in the order the service loads them (file, then place)."""
    return [
        rule["name"]
        for path in sorted((ROOT / "rules").glob("*.yaml"))
        for rule in yaml.safe_load(path.read_text())["rules"]
    ]


def _log_lines(output: list[str]) -> list[dict[str, Any]]:
    """The JSON log lines of the output (the banner is plain text)."""
    found = []
    for line in output:
        if line.startswith("{"):
            found.append(json.loads(line))
    return found


async def test_a_malformed_request_never_puts_its_header_in_the_log(serve: ServeFactory) -> None:
    served = serve()
    port = urlsplit(served.url).port
    assert port is not None
    request = (
        b"GET /api/v1/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Authorization: Bearer " + MARKER.encode() + b"\x00\r\n\r\n"
    )
    # A flood: twenty of them, each an error with the raw header in aiohttp's own log line.
    for _ in range(20):
        assert status_of(await exchange(port, request)) == 400

    async def reported() -> bool:
        output = "".join(served.output)
        return "bad HTTP request" in output or "Error handling request" in output

    await eventually(reported)
    output = "".join(served.output)
    assert MARKER not in output
    assert "Traceback" not in output
    [first, *rest] = [
        e for e in _log_lines(served.output) if str(e.get("event")).startswith("bad HTTP")
    ]
    # The fact and the peer stay; the flood is one line per interval (and says how many).
    assert first["peer"] == "127.0.0.1"
    assert first["error"] in ("BadHttpMessage", "InvalidHeader")
    assert first["status"] == 400
    assert first["level"] == "warning"
    assert len(rest) <= 1


_UNREACHABLE = {
    "REMEDIATOR_DATABASE_URL": "postgres://app:s3cret-pw@127.0.0.1:1/orders",
    "REMEDIATOR_REDIS_URL": "redis://:s3cret-pw@127.0.0.1:1/0",
    "REMEDIATOR_WEBHOOK_TOKEN": "a-webhook-token-of-some-length",
}


@pytest.mark.parametrize(
    ("env", "code", "says"),
    [
        pytest.param(
            _UNREACHABLE,
            1,
            "error: database_url (REMEDIATOR_DATABASE_URL): cannot reach PostgreSQL at"
            " 127.0.0.1:1/orders: ",
            id="database-unreachable",
        ),
        pytest.param(
            {**_UNREACHABLE, "REMEDIATOR_DATABASE_URL": "postgres://a:s3cret-pw@[::1"},
            2,
            "error: configuration: REMEDIATOR_DATABASE_URL: not a PostgreSQL URL: ",
            id="dsn-malformed",
        ),
        pytest.param(
            {**_UNREACHABLE, "REMEDIATOR_REDIS_URL": "rediss://x:s3cret-pw@host:notaport/0"},
            2,
            "error: configuration: REMEDIATOR_REDIS_URL: not a Redis URL: ",
            id="redis-url-malformed",
        ),
        pytest.param(
            {"REMEDIATOR_NAMESPACE_ALLOW": "Kube_System"},
            2,
            "error: configuration: REMEDIATOR_NAMESPACE_ALLOW: 'Kube_System' is not a namespace",
            id="allow-not-a-label",
        ),
        pytest.param(
            {"REMEDIATOR_NAMESPACE_DENY": ""},
            2,
            "error: configuration: REMEDIATOR_NAMESPACE_DENY: empty: ",
            id="deny-empty",
        ),
        pytest.param(
            {
                "REMEDIATOR_SSO_USER_HEADER": "X-Forwarded-User",
                "REMEDIATOR_SSO_TRUSTED_PROXIES": "0.0.0.0/0",
            },
            2,
            "error: configuration: REMEDIATOR_SSO_TRUSTED_PROXIES: 0.0.0.0/0: 4,256,038,912 public",
            id="sso-from-everyone",
        ),
        pytest.param(
            # Was a warning, and serve started live and acted: the same typo in YAML is exit 2.
            {"REMEDIATOR_DRYRUN": "true"},
            2,
            "error: configuration: REMEDIATOR_DRYRUN: unknown setting (did you mean "
            "REMEDIATOR_DRY_RUN?)",
            id="misspelt-variable",
        ),
        pytest.param(
            {"REMEDIATOR_APPROVAL_TTL": "30"},
            2,
            "error: configuration: REMEDIATOR_APPROVAL_TTL: '30' is not a duration: a number "
            "needs a unit",
            id="duration-without-unit",
        ),
    ],
)
def test_a_start_that_cannot_succeed_is_one_line_naming_the_variable(
    embedded_dir: Path, env: dict[str, str], code: int, says: str
) -> None:
    result = serve_to_exit({**env_for(embedded_dir), **env})
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output
    assert "s3cret-pw" not in output
    assert result.stderr.splitlines()[-1].startswith(says), output
    # Nothing was started on the way: no embedded server for a configuration that is wrong.
    assert not (embedded_dir / "postgres").exists()


def test_a_database_that_never_answers_is_named_as_such(embedded_dir: Path) -> None:
    # A server that accepts the connection and says nothing: the connect timeout's error has
    # no text, and the line ended in "TimeoutError: ".
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        env = {
            **_UNREACHABLE,
            "REMEDIATOR_DATABASE_URL": f"postgres://a:s3cret-pw@127.0.0.1:{port}/x",
        }
        result = serve_to_exit({**env_for(embedded_dir), **env})
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"error: database_url (REMEDIATOR_DATABASE_URL): cannot reach PostgreSQL at"
        f" 127.0.0.1:{port}/x: "
        "TimeoutError: no answer in time"
    )


async def test_the_banner_and_the_log_say_what_runs_where_and_what_is_unsafe(
    serve: ServeFactory, embedded_dir: Path, redis_url: str
) -> None:
    served = serve(
        {
            "REMEDIATOR_REDIS_URL": redis_url,
            "REMEDIATOR_NAMESPACE_DENY": "none",
        }
    )

    async def started() -> list[dict[str, Any]]:
        return [e for e in _log_lines(served.output) if e.get("event") == "started"]

    [line] = await eventually(started)
    text = "".join(served.output)
    [storage] = [s for s in text.splitlines() if s.strip().startswith("storage:")]
    assert storage.split(":", 1)[1].strip() == (
        f"embedded PostgreSQL under {embedded_dir}; external Redis (REMEDIATOR_REDIS_URL)"
    )
    [mode] = [s for s in text.splitlines() if s.strip().startswith("mode:")]
    assert line["mode"] == mode.split(":", 1)[1].strip()
    # The embedded default runs every step dry for want of a system, not because it is forced:
    # the line said `"dry_run": false` beside `"mode": "dry-run ..."`.
    assert line["mode"].startswith("dry-run (nothing is changed)")
    assert "dry_run" not in line
    assert line["dry_run_everywhere"] is False
    assert line["storage"] == storage.split(":", 1)[1].strip()
    # The data directory is not the default: the CLI hint points there, with a command this
    # shell finds (serve runs as python -m receiver.cli: that again, unless PATH has the script).
    cli = (
        "remediator"
        if shutil.which("remediator")
        else f"{shlex.quote(sys.executable)} -m receiver.cli"
    )
    assert f"REMEDIATOR_DATA_DIR={embedded_dir} {cli} runs" in text
    # The deny list was emptied on purpose: an error line and a banner line name what it allows.
    assert "  WARNING:    actions may touch kube-system, kube-public, kube-node-lease" in text
    [unsafe] = [
        e for e in _log_lines(served.output) if e["event"] == "configuration removes a safety"
    ]
    assert unsafe["level"] == "error"
    # The shipped rules notify "oncall", and no channel is configured (notifications not set
    # up yet): once at start-up, not one per run (each run's audit row says it again), and in
    # one line naming the rules and their fields, not one line per field (seven, before the
    # first banner).
    [channels] = [e for e in _log_lines(served.output) if e["event"] == "rule warning"]
    assert channels["level"] == "warning"
    assert channels["warning"] == (
        "no notify channels are configured (notify.channels), so messages to 'oncall' are "
        "recorded as undelivered"
    )
    assert channels["rules"] == _shipped_rule_names()  # each of them notifies
    assert len(channels["at"]) > len(channels["rules"])  # a rule's notify step and its own
    for at in channels["at"]:
        assert re.search(r"/rules/[\w-]+\.yaml:\d+$", at), at


@pytest.mark.parametrize("where", ["port-taken", "address-not-here"])
def test_a_port_in_use_or_an_address_not_here_is_one_line_naming_the_settings(
    embedded_dir: Path, where: str
) -> None:
    """Found by attack: a full traceback after the embedded servers had started. Now one line
    naming the settings to change, and the embedded servers stopped again."""
    env = env_for(embedded_dir)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        if where == "address-not-here":
            env["REMEDIATOR_HOST"] = "192.0.2.1"  # TEST-NET-1: no address of this machine
            port = 0
        result = subprocess.run(
            [sys.executable, "-m", "receiver.cli", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    last = result.stderr.splitlines()[-1]
    host = env.get("REMEDIATOR_HOST", "127.0.0.1")
    assert last.startswith(f"error: cannot listen on {host}:{port}: "), output
    assert "REMEDIATOR_HOST" in last
    assert "REMEDIATOR_PORT" in last
    assert not (embedded_dir / "postgres" / "data" / "postmaster.pid").exists()
