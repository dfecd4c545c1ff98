"""``remediator --config FILE`` given a file that is not a settings file (``/etc/shadow``): the
error names the file and line, and quotes nothing of it that is not plausibly a key. The first
line of /etc/shadow reads as a YAML key (it ends with a colon), and was quoted whole in
``unknown setting``, a password hash included."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.config import ConfigError, load_settings

HASH = "$6$Zq8saltsalt$Kx7hashhashhashhash"
SHADOW = f"root:{HASH}:20228:0:99999:7:::\ndaemon:*:20228:0:99999:7:::\n"
HIDDEN = "a key that is no setting's name (not shown: is this a settings file?)"


def _refusal(tmp_path: Path, text: str) -> tuple[Path, str]:
    config = tmp_path / "settings.yaml"
    config.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    return config, caught.value.message


@pytest.mark.parametrize(
    ("text", "line", "secret"),
    [
        (SHADOW, 1, HASH),
        ("dry_run: true\nA line of prose with s3cr3t in it: value\n", 2, "s3cr3t"),
        ("d41d8cd98f00b204e9800998ecf8427e: x\n", 1, "d41d8cd98f00b204e9800998ecf8427e"),
        ("http:\n  'token=hunter2': x\n", 2, "hunter2"),
    ],
)
def test_a_key_that_is_no_settings_name_is_not_quoted(
    tmp_path: Path, text: str, line: int, secret: str
) -> None:
    config, message = _refusal(tmp_path, text)
    assert message == f"{config}:{line}: {HIDDEN}"
    assert secret not in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A key given twice that is no setting's name is not named either.
        (
            "root:x:0:0: a\nroot:x:0:0: b\n",
            "2: invalid YAML: a key is given twice (first at line 1;",
        ),
        # An alias, an anchor and a tag are the file's text: not quoted in PyYAML's problem.
        ("a: *s3cr3tvalue\n", "1: invalid YAML: found undefined alias '(not shown)'"),
        ("a: !s3cr3tvalue x\n", "1: invalid YAML: could not determine a constructor for the tag"),
        # A character and a token's name still are.
        ("a: [1\n", "2: invalid YAML: expected ',' or ']', but got '<stream end>'"),
        ("a:\n\tb: 1\n", "2: invalid YAML: found character '\\t' that cannot start any token"),
    ],
)
def test_yaml_problems_quote_no_text_of_the_file(tmp_path: Path, text: str, message: str) -> None:
    config, said = _refusal(tmp_path, text)
    assert said.startswith(f"{config}:{message}")
    assert "s3cr3t" not in said


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # Was "1: True: unknown setting", on the file's first line whatever the key's.
        ("dry_run: true\nyes: 1\n", '2: keys must be strings: write "yes" in quotes: YAML reads'),
        ("log:\n  on: x\n", '2: keys must be strings: write "on" in quotes: YAML reads it as'),
        # A number is no setting's name, and may be a secret (a PIN) written as a key.
        ("log:\n  20260101: x\n", "2: keys must be strings: YAML reads this one as a number (not"),
    ],
)
def test_a_key_yaml_reads_as_no_text_is_told_at_its_line(
    tmp_path: Path, text: str, message: str
) -> None:
    config, said = _refusal(tmp_path, text)
    assert said.startswith(f"{config}:{message}")
    assert "20260101" not in said


def test_a_plausible_key_is_named_with_its_line_and_never_its_value(tmp_path: Path) -> None:
    config, message = _refusal(tmp_path, "dry_run: true\npassword: hunter2\n")
    assert message == f"{config}:2: password: unknown setting"


def test_the_cli_says_which_file_without_echoing_it(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.write_text(SHADOW, encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(shadow), "lint"])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: configuration: {shadow}:1: {HIDDEN}\n"
