"""`remediator serve` and the notify channels its rules name: a channel that is not configured
stops the start, and a reload that brings one in is refused with the rules in force kept, as
for any other rule error (a message to it would be lost while its run succeeds)."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.payloads import alert, notification_body
from tests.support.polling import eventually
from tests.support.served import ServeFactory, cli, env_for, serve_to_exit

TELL_ONCALL = """\
rules:
  - name: tell-oncall
    match: ['alertname="Hello"']
    target: {kind: Deployment, namespace: shop, name: web}
    steps:
      - action: notify
        params: {channel: oncall, message: "hello {{ labels.alertname }}"}
"""

TELL_NOBODY = """\
  - name: tell-nobody
    match: ['alertname="Other"']
    target: {kind: Deployment, namespace: shop, name: web}
    steps:
      - action: notify
        params: {channel: nosuch, message: "lost"}
"""

UNKNOWN = (
    "a.yaml:13: rule 'tell-nobody': steps[0].params.channel: no notify channel named 'nosuch' "
    "is configured (notify.channels: oncall)"
)


def _settings(tmp_path: Path, rules_text: str) -> tuple[Path, dict[str, str]]:
    """A rules directory holding ``rules_text`` and the settings naming it, with one notify
    channel, ``oncall`` (to a port nobody listens on: delivery is not what is tested)."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(rules_text)
    hook = tmp_path / "oncall-url"
    hook.write_text("http://127.0.0.1:9/hook")
    hook.chmod(0o600)
    channels = {"oncall": {"kind": "webhook", "url_file": str(hook)}}
    return rules, {
        "REMEDIATOR_RULES_DIR": str(rules),
        "REMEDIATOR_NOTIFY_CHANNELS": json.dumps(channels),
    }


def test_serve_refuses_to_start_with_a_step_naming_a_channel_not_configured(
    tmp_path: Path, embedded_dir: Path
) -> None:
    rules, settings = _settings(tmp_path, TELL_ONCALL + TELL_NOBODY)
    proc = serve_to_exit(env_for(embedded_dir) | settings)
    assert proc.returncode != 0
    assert f"{rules}/{UNKNOWN}" in proc.stderr.splitlines()
    assert "error(s) in the rule files; not starting" in proc.stderr


async def test_a_reload_naming_a_channel_not_configured_is_refused_and_the_rules_stay(
    serve: ServeFactory, embedded_dir: Path, tmp_path: Path
) -> None:
    rules, settings = _settings(tmp_path, TELL_ONCALL)
    served = serve(settings)
    (rules / "a.yaml").write_text(TELL_ONCALL + TELL_NOBODY)
    served.proc.send_signal(signal.SIGHUP)

    async def failed_reloads() -> list[dict[str, Any]]:
        code, out, err = await cli(env_for(embedded_dir), "audit", "export")
        assert code == 0, err
        rows = [json.loads(line) for line in out.splitlines()]
        return [r for r in rows if r["kind"] == "rules.reload_failed"]

    # The watcher may see the change before the signal does: one failed reload or two.
    failed = await eventually(failed_reloads, what="a rules.reload_failed row")
    assert failed[0]["data"]["errors"] == [f"{rules}/{UNKNOWN}"]
    assert failed[0]["data"]["kept"]["names"] == ["tell-oncall"]

    # The rules in force are the old ones: Hello is acted on, Other (the refused rule's) not.
    auth = {"Authorization": f"Bearer {served.token}"}
    operator = {"Authorization": f"Bearer {served.operator}"}
    body = notification_body(alert({"alertname": "Hello"}), alert({"alertname": "Other"}))
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{served.url}/api/v1/alerts", json=body, headers=auth) as resp:
            assert resp.status == 200, await resp.text()

        async def runs() -> list[dict[str, Any]]:
            async with session.get(f"{served.url}/api/v1/runs", headers=operator) as resp:
                assert resp.status == 200
                return list((await resp.json())["runs"])

        found = await eventually(runs, what="a run of the rules kept")
    # A firing alert no rule matches is stored done at intake: no run will come for Other.
    assert [r["rule"] for r in found] == ["tell-oncall"]
