"""Slack clicks: which workspace's are taken (``approvals.slack.team_ids``). Pure: the
signature and the route are tested over HTTP in tests/integration/http/test_approvals_slack.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import structlog

from receiver.approvals.setup import approval_setup
from receiver.approvals.slack import SlackInteractions, SlackPayloadError
from receiver.config import ConfigError, load_settings
from receiver.config.approvals import load_approvals
from receiver.store import Store


def _click(team: Any) -> bytes:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": "U0BOB"},
        "actions": [{"action_id": "remediator_approve", "value": "a1"}],
    }
    if team is not None:
        payload["team"] = team
    return urlencode({"payload": json.dumps(payload)}).encode()


@pytest.mark.parametrize(
    ("teams", "team", "allowed"),
    [
        # Unset: any workspace the signing secret signs for, as before.
        ((), {"id": "T0OTHER"}, True),
        ((), None, True),
        (("T0HOME",), {"id": "T0HOME"}, True),
        (("T0HOME", "T0SECOND"), {"id": "T0SECOND"}, True),
        # Signed with the same secret, but clicked in another workspace the app is installed in.
        (("T0HOME",), {"id": "T0OTHER"}, False),
        (("T0HOME",), {"id": "t0home"}, False),
        (("T0HOME",), None, False),  # no team at all: from none of them
        (("T0HOME",), {"id": ""}, False),
        (("T0HOME",), "T0HOME", False),  # not the payload's shape
    ],
)
def test_a_click_is_taken_only_from_the_configured_workspaces(
    teams: tuple[str, ...], team: Any, allowed: bool
) -> None:
    slack = SlackInteractions("secret", {"U0BOB": "bob"}, teams=teams)
    assert slack.team_allowed(slack.parse(_click(team))) is allowed


def test_the_team_ids_setting_reaches_the_slack_handler(tmp_path: Path) -> None:
    secret = tmp_path / "slack"
    secret.write_text("shh\n")
    environ = {
        "REMEDIATOR_SLACK_SIGNING_SECRET_FILE": str(secret),
        "REMEDIATOR_SLACK_TEAM_IDS": " T0HOME, T0SECOND ,",
    }
    settings = load_settings(None, environ)
    assert settings.slack_team_ids == ("T0HOME", "T0SECOND")
    files = load_approvals(settings)
    setup = approval_setup(settings, files, Store(None, "x"), log=structlog.get_logger("t"))
    assert setup.slack is not None
    assert setup.slack.team_allowed(setup.slack.parse(_click({"id": "T0SECOND"})))
    assert not setup.slack.team_allowed(setup.slack.parse(_click({"id": "T0OTHER"})))
    assert load_settings(None, {}).slack_team_ids == ()


def test_the_team_ids_setting_in_yaml_is_a_list(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("approvals:\n  slack:\n    team_ids: [T0HOME]\n")
    assert load_settings(config, {}).slack_team_ids == ("T0HOME",)


@pytest.mark.parametrize("value", ["acme.slack.com", "acme", "T0HOME,https://acme.slack.com"])
def test_a_workspace_name_or_url_is_refused_for_its_id(value: str) -> None:
    # It would match no click: every approval from Slack would be refused.
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"REMEDIATOR_SLACK_TEAM_IDS": value})
    assert caught.value.message.startswith("REMEDIATOR_SLACK_TEAM_IDS: ")
    assert "is not a Slack team id" in caught.value.message


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        # Signed, so read: json.loads raised RecursionError, which the handler answered 500.
        ("[" * 100_000 + "]" * 100_000, "payload: invalid JSON: nested too deeply"),
        ('{"n": ' + "9" * 5000 + "}", "payload: invalid JSON: a number has more than 4300 digits"),
        ("{", "payload: invalid JSON: Expecting property name enclosed in double quotes"),
    ],
)
def test_a_payload_that_is_no_json_is_refused_saying_why(payload: str, problem: str) -> None:
    slack = SlackInteractions("secret", {"U0BOB": "bob"})
    with pytest.raises(SlackPayloadError) as caught:
        slack.parse(urlencode({"payload": payload}).encode())
    assert str(caught.value).startswith(problem)
