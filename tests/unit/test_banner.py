"""Start-up: the embedded default's generated tokens, a banner with working commands and never a
configured secret, and an open receiver must be asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from receiver.config import ConfigError, Settings
from receiver.embedded import EmbeddedError
from receiver.model import NamespacePolicy
from receiver.rules.loader import load_rules
from receiver.startup import (
    SAMPLES_DIR,
    Generated,
    banner,
    embedded_credentials,
    invoked_command,
    matching_sample,
    require_authentication,
)
from remediations.registry import default_registry

URL = "http://127.0.0.1:9095"
ROOT = Path(__file__).resolve().parents[2]
# The rule of the README's "Try an approval locally", which no shipped sample matches.
TRY_APPROVAL = """\
rules:
  - name: try-approval
    match: ['alertname="TryApproval"']
    target: {kind: HttpEndpoint, name: catcher}
    steps:
      - action: http.call
        params: {body: {said: "{{ annotations.summary }}"}}
        approval: required
"""


def test_generated_tokens_are_printed_with_ready_commands(tmp_path: Path) -> None:
    settings, generated = embedded_credentials(Settings(data_dir=tmp_path))
    assert generated == Generated(webhook=True, operator=True)
    webhook = (tmp_path / "webhook-token").read_text().strip()
    operator = (tmp_path / "operator-token").read_text().strip()
    assert webhook != operator
    for name in ("webhook-token", "operator-token"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    assert settings.webhook_token is not None
    assert settings.webhook_token.get_secret_value() == webhook
    assert {k: v.get_secret_value() for k, v in settings.operator_tokens.items()} == {
        "local": operator
    }
    text = banner(
        settings, URL, dry_run=False, live=[], embedded=True, shown=generated, sample=None
    )
    # Named by a prefix and their files, never printed (container logs keep stderr).
    assert webhook not in text
    assert operator not in text
    assert f"webhook token:  {webhook[:4]}…  (in {tmp_path / 'webhook-token'};" in text
    assert f"operator token: {operator[:4]}…  (in {tmp_path / 'operator-token'};" in text
    assert f"""curl -sS -H "Authorization: Bearer $(cat {tmp_path}/webhook-token)" """ in text
    runs = f"""curl -sS -H "Authorization: Bearer $(cat {tmp_path}/operator-token)" {URL}"""
    assert f"{runs}/api/v1/runs" in text
    assert f"{URL}/api/v1/alerts" in text
    assert "remediator runs" in text
    assert "dry-run" in text
    # The same data directory keeps the same tokens across restarts.
    again, _ = embedded_credentials(Settings(data_dir=tmp_path))
    assert again.webhook_token is not None
    assert again.webhook_token.get_secret_value() == webhook
    assert again.operator_tokens["local"].get_secret_value() == operator


def test_a_kept_token_open_to_other_users_is_refused(tmp_path: Path) -> None:
    embedded_credentials(Settings(data_dir=tmp_path))
    (tmp_path / "operator-token").chmod(0o644)
    with pytest.raises(EmbeddedError, match="operator-token is open to other users"):
        embedded_credentials(Settings(data_dir=tmp_path))


def test_configured_tokens_are_never_printed(tmp_path: Path) -> None:
    secret = "production-secret-do-not-print"
    operators = tmp_path / "operators"
    operators.mkdir()
    (operators / "alice").write_text("alice-secret-token-do-not-print\n")
    settings, generated = embedded_credentials(
        Settings(
            data_dir=tmp_path,
            webhook_token=SecretStr(secret),
            operator_tokens_dir=operators,
            operator_tokens={"alice": SecretStr("alice-secret-token-do-not-print")},
        )
    )
    assert generated == Generated(webhook=False, operator=False)
    assert not (tmp_path / "webhook-token").exists()
    assert not (tmp_path / "operator-token").exists()
    text = banner(
        settings,
        URL,
        dry_run=False,
        live=["kubernetes"],
        embedded=False,
        shown=generated,
        sample=None,
    )
    assert secret not in text
    assert "do-not-print" not in text
    assert "$WEBHOOK_TOKEN" in text
    assert "$OPERATOR_TOKEN" in text
    assert "operators:  alice" in text
    assert "LIVE" in text


def test_without_operators_the_banner_says_nobody_may_read_runs() -> None:
    settings = Settings(webhook_token=SecretStr("t"))
    text = banner(
        settings, URL, dry_run=True, live=[], embedded=False, shown=Generated(), sample=None
    )
    assert "operators:  NONE" in text


def test_basic_auth_banner_names_the_user_not_the_password() -> None:
    settings = Settings(webhook_username="am", webhook_password=SecretStr("pw-secret"))
    text = banner(
        settings, URL, dry_run=True, live=[], embedded=False, shown=Generated(), sample=None
    )
    assert "pw-secret" not in text
    assert "-u 'am:PASSWORD'" in text


def test_an_unauthenticated_receiver_on_external_servers_must_be_asked_for() -> None:
    external = {
        "database_url": SecretStr("postgresql://db/x"),
        "redis_url": SecretStr("redis://r:6379/0"),
    }
    with pytest.raises(ConfigError) as info:
        require_authentication(Settings(**external))
    assert "REMEDIATOR_ALLOW_UNAUTHENTICATED" in info.value.message
    # Any of these is an answer; the embedded default generates a token of its own.
    require_authentication(Settings(**external, allow_unauthenticated=True))
    require_authentication(Settings(**external, webhook_token=SecretStr("t")))
    require_authentication(
        Settings(**external, webhook_username="am", webhook_password=SecretStr("p"))
    )
    require_authentication(Settings())


@pytest.mark.parametrize(
    ("dry_run", "live", "says", "never"),
    [
        (True, ["kubernetes"], "dry-run everywhere", "LIVE"),
        (False, [], "dry-run (nothing is changed)", "LIVE"),
        (False, ["kubernetes", "postgres:orders"], "LIVE on kubernetes, postgres:orders", "dry"),
        (False, ["postgres:orders"], "Kubernetes steps dry-run (no cluster credentials)", "!"),
    ],
)
def test_the_mode_line_says_where_steps_change_things(
    dry_run: bool, live: list[str], says: str, never: str
) -> None:
    text = banner(
        Settings(), URL, dry_run=dry_run, live=live, embedded=False, shown=Generated(), sample=None
    )
    [mode] = [line for line in text.splitlines() if line.strip().startswith("mode:")]
    assert says in mode
    assert never not in mode


def test_the_banner_suggests_a_sample_the_rules_match() -> None:
    rules = load_rules(ROOT / "rules", default_registry(), NamespacePolicy())
    sample = matching_sample(rules)
    assert sample == SAMPLES_DIR / "high-memory.json"
    text = banner(
        Settings(), URL, dry_run=True, live=[], embedded=True, shown=Generated(), sample=sample
    )
    assert "  post a sample alert:\n" in text
    assert f"--data @{sample} {URL}/api/v1/alerts" in text


def test_the_banner_suggests_no_sample_when_none_matches_the_rules(tmp_path: Path) -> None:
    # The README's walkthrough loads only this rule, and the banner suggested high-memory.json,
    # which would have been stored done, starting no run.
    (tmp_path / "try-approval.yaml").write_text(TRY_APPROVAL, encoding="utf-8")
    rules = load_rules(tmp_path, default_registry(), NamespacePolicy())
    assert matching_sample(rules) is None
    text = banner(
        Settings(), URL, dry_run=True, live=[], embedded=True, shown=Generated(), sample=None
    )
    assert "high-memory" not in text
    assert "  post an alert of yours (no sample alert matches the rules):\n" in text
    assert f"--data @ALERT.json {URL}/api/v1/alerts" in text


def test_the_cli_command_is_one_a_shell_finds_from_where_serve_started(tmp_path: Path) -> None:
    venv = tmp_path / "project" / ".venv" / "bin"
    venv.mkdir(parents=True)
    script = venv / "remediator"
    script.write_text("#!/bin/sh\n")
    elsewhere = tmp_path / "some dir"
    elsewhere.mkdir()

    def nowhere(name: str) -> str | None:
        return None

    # `make run`: the script by its path under the project, the venv not on PATH.
    project = tmp_path / "project"
    assert invoked_command(".venv/bin/remediator", project, nowhere) == ".venv/bin/remediator"
    assert invoked_command(str(script), project, nowhere) == ".venv/bin/remediator"
    # Started by its full path from another directory, not on PATH: a bare name would be
    # "command not found"; the absolute path, quoted, works from there.
    assert invoked_command(str(script), elsewhere, nowhere) == str(script)
    # On PATH (an activated venv, pipx): the bare name.
    assert invoked_command(str(script), elsewhere, lambda name: str(script)) == "remediator"
    # Another remediator first on PATH would run a different install: not the bare name.
    other = tmp_path / "other" / "remediator"
    assert invoked_command(str(script), elsewhere, lambda name: str(other)) == str(script)
    # Started in the venv's bin directory itself: ./remediator, not a name PATH looks up.
    assert invoked_command("./remediator", venv, nowhere) == "./remediator"
    assert invoked_command(str(script), venv, nowhere) == "./remediator"
    # python -m receiver.cli: that again, by this interpreter, unless PATH has the script.
    module = "/x/receiver/cli/__main__.py"
    python = "/opt/my venv/bin/python3"
    assert invoked_command(module, elsewhere, nowhere, python) == f"'{python}' -m receiver.cli"
    assert invoked_command(module, elsewhere, lambda name: str(script), python) == "remediator"
    # Neither (an embedding program): the bare name.
    assert invoked_command("/usr/bin/something", elsewhere, nowhere, python) == "remediator"


def test_a_cli_path_with_a_space_is_quoted_for_the_shell(tmp_path: Path) -> None:
    script = tmp_path / "my venv" / "bin" / "remediator"
    elsewhere = tmp_path / "elsewhere"
    assert invoked_command(str(script), elsewhere, lambda name: None) == f"'{script}'"
