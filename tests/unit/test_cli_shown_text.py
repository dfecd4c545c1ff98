"""Alert text in the command line's tables and lines is shown as written: never read as rich
markup (``[/bold]`` made ``remediator runs`` die with a MarkupError; ``[link=...]`` made a label
a hidden hyperlink), and a control character (an escape sequence that clears the terminal, a
newline) is written as its escape, not sent to the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import receiver
from receiver.cli import main
from receiver.cli.common import print_listing

SAMPLE = Path(receiver.__file__).parent / "samples" / "high-memory.json"
HOSTILE = {
    "[/bold]": "[/bold]",
    "[link=https://evil.example]HighMemoryUsage[/link]": (
        "[link=https://evil.example]HighMemoryUsage[/link]"
    ),
    "[red]Web[/red]": "[red]Web[/red]",
    "a\x1b[2Jb": "a\\x1b[2Jb",
    "two\nlines\r": "two\\nlines\\r",
    "odd \x85 \x7f": "odd \\x85 \\x7f",
    "abc\u202eexe.txt": "abc\\u202eexe.txt",
}


@pytest.mark.parametrize(("value", "expected"), HOSTILE.items())
def test_a_listing_shows_alert_text_as_written(
    capsys: pytest.CaptureFixture[str], value: str, expected: str
) -> None:
    page = {"runs": [{"id": "r1", "alertname": value}]}
    print_listing(
        page, "runs", ("id", "alertname"), lambda r: [r["id"], r["alertname"]], as_json=False
    )
    out = capsys.readouterr().out
    assert expected in out
    assert "\x1b" not in out


def test_simulate_shows_a_hostile_alertname_as_written(tmp_path: Path) -> None:
    payload = json.loads(SAMPLE.read_text())
    payload["alerts"][0]["labels"]["alertname"] = "[/bold]\x1b[2J"
    path = tmp_path / "hostile.json"
    path.write_text(json.dumps(payload))
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "other.yaml").write_text(
        "rules:\n  - name: other\n    match: ['alertname=\"Other\"']\n"
        "    target: {kind: Deployment, namespace: demo, name: web}\n"
        "    steps:\n      - action: kubernetes.rollout_restart\n"
    )
    result = CliRunner().invoke(
        main, ["simulate", str(path), "--rules", str(rules)], env={}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    assert "[/bold]\\x1b[2J firing" in result.stdout
    assert "\x1b" not in result.stdout


def test_an_empty_listing_says_there_is_none(capsys: pytest.CaptureFixture[str]) -> None:
    # An empty table's header alone read as a listing that failed to arrive.
    pages: tuple[dict[str, Any], ...] = ({"events": []}, {"events": None}, {})
    for page in pages:
        print_listing(page, "events", ("id",), lambda r: [r["id"]], as_json=False)
        assert capsys.readouterr().out == "no events\n"
    # A page with nothing on it but another page after it is still a table and its cursor.
    print_listing(
        {"events": [], "next_cursor": "c2"}, "events", ("id",), lambda r: [r["id"]], as_json=False
    )
    assert "more: --cursor c2" in capsys.readouterr().out
