"""An argument holding a byte that is not UTF-8 (argv gives it as a lone surrogate) is a usage
error naming the option, before anything is sent: aiohttp dropped the byte from a query, so
`runs --rule 'ab\\xff'` listed the runs of rule `ab` (and `--rule '\\xff'` was told "rule must
not be empty"), and the server answered such a `pause --reason` with a 500."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main

NOT_UTF8 = os.fsdecode(b"ab\xff")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["runs", "--rule", NOT_UTF8], "--rule"),
        (["events", "--alertname", NOT_UTF8], "--alertname"),
        (["report", "--since", NOT_UTF8], "--since"),
        (["pause", "--reason", NOT_UTF8], "--reason"),
        (
            ["approvals", "reject", "0b5e4f6a-1c2d-4e3f-8a9b-0c1d2e3f4a5b", "--reason", NOT_UTF8],
            "--reason",
        ),
    ],
)
def test_a_non_utf8_argument_is_a_usage_error_naming_its_option(
    tmp_path: Path, args: list[str], option: str
) -> None:
    # Port 1 on loopback: a request that got through would fail the test (tests/unit/conftest).
    result = CliRunner().invoke(
        main,
        [*args, "--url", "http://127.0.0.1:1"],
        env={"REMEDIATOR_DATA_DIR": str(tmp_path), "REMEDIATOR_OPERATOR_TOKEN": "x" * 20},
    )
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"error: {option}: not UTF-8 text (a byte the shell passed is not UTF-8);"
        " nothing was sent\n"
    )


def test_a_url_not_utf8_is_a_usage_error_before_anything_is_sent(tmp_path: Path) -> None:
    # aiohttp failed on it: "error: http://127.0.0.1\udcff:1/api/v1/runs: <the same URL>", exit 1.
    result = CliRunner().invoke(
        main,
        ["runs", "--url", os.fsdecode(b"http://127.0.0.1\xff:1")],
        env={"REMEDIATOR_DATA_DIR": str(tmp_path), "REMEDIATOR_OPERATOR_TOKEN": "x" * 20},
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--url': not UTF-8 text" in result.stderr, result.stderr
    assert "Traceback" not in result.output
