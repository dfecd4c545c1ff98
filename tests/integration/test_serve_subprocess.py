"""`remediator serve` as a user runs it: a subprocess on the embedded default (PostgreSQL and
Redis from wheels, dry-run with no cluster), driven over HTTP, stopped and started again."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import aiohttp

from tests.support.polling import eventually
from tests.support.served import (
    SAMPLE,
    Served,
    ServeFactory,
    env_for,
    launch,
    serve_to_exit,
    stop,
)


async def _runs(session: aiohttp.ClientSession, served: Served) -> list[dict[str, object]]:
    async with session.get(
        f"{served.url}/api/v1/runs", headers={"Authorization": f"Bearer {served.operator}"}
    ) as resp:
        assert resp.status == 200
        body = await resp.json()
        return list(body["runs"])


async def test_serve_on_the_embedded_default_end_to_end(serve: ServeFactory) -> None:
    served = serve()
    banner = "".join(served.output)
    assert "dry-run" in banner
    # The tokens are named by their files, never printed (the fixture read them there).
    assert served.token not in banner
    assert served.operator not in banner
    assert f"{served.token[:4]}…" in banner
    assert "curl" in banner
    auth = {"Authorization": f"Bearer {served.token}", "Content-Type": "application/json"}
    body = SAMPLE.read_bytes()
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{served.url}/readyz") as resp:
            assert resp.status == 200
            ready = await resp.json()
            assert ready["components"]["kubernetes"]["detail"].startswith("dry-run")

        async with session.post(f"{served.url}/api/v1/alerts", data=body) as resp:
            assert resp.status == 401  # no token: refused, and nothing stored
        async with session.post(f"{served.url}/api/v1/alerts", data=b"{", headers=auth) as resp:
            assert resp.status == 400
            assert (await resp.json())["field"] == "body"

        async with session.post(f"{served.url}/api/v1/alerts", data=body, headers=auth) as resp:
            assert resp.status == 200
            assert await resp.json() == {"accepted": 1, "duplicates": 0}
        async with session.post(f"{served.url}/api/v1/alerts", data=body, headers=auth) as resp:
            assert await resp.json() == {"accepted": 0, "duplicates": 1}

        runs = await eventually(
            lambda: _runs(session, served),
            lambda runs: bool(runs) and runs[0]["outcome"] not in ("pending", "running"),
        )
        assert len(runs) == 1
        assert runs[0]["outcome"] == "dry_run"
        assert runs[0]["target"] == {"kind": "Deployment", "namespace": "demo", "name": "web"}

        async with session.get(f"{served.url}/metrics") as resp:
            metrics = await resp.text()
        assert re.search(r'remediator_runs_total\{[^}]*outcome="dry_run"[^}]*\} 1\.0', metrics)

    assert stop(served) == 0

    # The same data directory after a restart: what was accepted and done is still there.
    again = serve()
    assert again.token == served.token
    async with aiohttp.ClientSession() as session:
        runs = await _runs(session, again)
        assert [r["id"] for r in runs] == [runs[0]["id"]]
        assert runs[0]["outcome"] == "dry_run"
        headers = {**auth, "Authorization": f"Bearer {again.token}"}
        async with session.post(f"{again.url}/api/v1/alerts", data=body, headers=headers) as r:
            assert await r.json() == {"accepted": 0, "duplicates": 1}

        # The kill switch: a new alert while paused makes a run the pause guard refuses.
        operator = {"Authorization": f"Bearer {again.operator}"}
        async with session.put(
            f"{again.url}/api/v1/pause", headers=headers, json={"reason": "change freeze"}
        ) as r:
            assert r.status == 403  # the webhook's token cannot pause
        async with session.put(
            f"{again.url}/api/v1/pause", headers=operator, json={"reason": "change freeze"}
        ) as r:
            assert r.status == 200
        other = json.loads(body)
        other["alerts"][0]["startsAt"] = "2024-05-27T09:00:00Z"  # a new episode
        async with session.post(
            f"{again.url}/api/v1/alerts", data=json.dumps(other), headers=headers
        ) as r:
            assert await r.json() == {"accepted": 1, "duplicates": 0}

        async def refused_runs() -> list[dict[str, object]]:
            return [r for r in await _runs(session, again) if r["outcome"] == "refused"]

        refused = await eventually(refused_runs)
        assert len(refused) == 1
        assert refused[0]["refusal_guard"] == "pause"
        assert "change freeze" in str(refused[0]["refusal_reason"])
    assert stop(again) == 0


def test_serve_refuses_to_start_on_bad_rules(tmp_path: Path, embedded_dir: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text("rules:\n  - name: x\n    match: ['alertname=~\"(\"']\n")
    # The data directory outside pytest's tmp_path, as wherever PostgreSQL could be started.
    env = env_for(embedded_dir) | {"REMEDIATOR_RULES_DIR": str(rules)}
    proc = serve_to_exit(env)
    assert proc.returncode != 0
    assert "bad.yaml:" in proc.stderr


def test_serve_refuses_approvers_naming_a_rule_not_loaded(
    tmp_path: Path, embedded_dir: Path
) -> None:
    # A misspelt rule name in by_rule would let the wider by_risk list decide its steps.
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text(
        "by_rule: {restart-on-high-memroy: [alice]}\nby_risk: {high: [alice, bob]}\n"
    )
    env = env_for(embedded_dir) | {"REMEDIATOR_APPROVERS_FILE": str(approvers)}
    proc = serve_to_exit(env)
    assert proc.returncode == 2
    assert "by_rule names 'restart-on-high-memroy', which no loaded rule is called" in proc.stderr
    assert "restart-on-high-memory" in proc.stderr  # the loaded rules are listed


def test_serve_refuses_to_start_open_and_says_how_to_fix_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env |= {
        "REMEDIATOR_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x",
        "REMEDIATOR_REDIS_URL": "redis://127.0.0.1:1/0",
        "REMEDIATOR_DATA_DIR": str(tmp_path),
    }
    proc = serve_to_exit(env, timeout_s=60)
    assert proc.returncode == 2
    assert "no webhook authentication is configured" in proc.stderr
    # Named as a user of the YAML file or of the variables would write it.
    assert "auth.token_file (REMEDIATOR_WEBHOOK_TOKEN_FILE)" in proc.stderr
    assert "auth.allow_unauthenticated (REMEDIATOR_ALLOW_UNAUTHENTICATED) true" in proc.stderr


async def test_serve_with_the_default_relative_data_dir_as_make_run_does(
    embedded_dir: Path,
) -> None:
    cwd = embedded_dir.parent
    env = env_for(embedded_dir)
    del env["REMEDIATOR_DATA_DIR"]  # the default, ".data", relative to where it runs
    proc, url, _ = launch(env, cwd=cwd)
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/readyz") as resp:
            assert resp.status == 200
        assert (cwd / ".data" / "webhook-token").is_file()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
