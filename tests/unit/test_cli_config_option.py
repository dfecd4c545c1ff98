"""``--config`` is the top command's option, given before the command. Given after it
(``remediator serve --config remediator.yaml``, as many tools take it), click said only
``No such option '--config'.``, as if there were no such option at all; the usage error now
says where it goes (exit 2, nothing run)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main


@pytest.mark.parametrize(
    "command",
    [["serve"], ["lint"], ["runs"], ["approvals", "list"], ["audit", "export"]],
    ids=" ".join,
)
@pytest.mark.parametrize("written", ["apart", "joined"])
def test_config_after_the_command_says_it_goes_before_it(
    tmp_path: Path, command: list[str], written: str
) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_text("http:\n  port: 9096\n")
    option = ["--config", str(config)] if written == "apart" else [f"--config={config}"]
    result = CliRunner().invoke(main, [*command, *option], prog_name="remediator")
    assert result.exit_code == 2, result.output
    said = " ".join(command)
    assert result.stderr.splitlines()[-1] == (
        f"Error: No such option '--config' for '{said}': it is remediator's own, given before"
        f" the command: remediator --config FILE {said} ..."
    )


def test_another_unknown_option_is_told_as_click_tells_it() -> None:
    result = CliRunner().invoke(main, ["serve", "--conf", "x"], prog_name="remediator")
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == "Error: No such option '--conf'."


def test_config_before_the_command_is_taken(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "a.yaml").write_text(
        "rules:\n"
        "  - name: r\n"
        "    match: ['alertname=\"X\"']\n"
        "    target: {kind: Deployment, namespace: demo, name: web}\n"
        "    steps: [{action: kubernetes.rollout_restart}]\n"
    )
    config = tmp_path / "remediator.yaml"
    config.write_text(f"rules_dir: {rules}\n")
    result = CliRunner().invoke(main, ["--config", str(config), "lint"], prog_name="remediator")
    assert result.exit_code == 0, result.output
    assert result.stdout == "1 rule OK in 1 file\n"
