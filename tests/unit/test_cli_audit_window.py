"""``audit export`` refuses a window that ends before it starts, as ``report`` does (the
server's "the window must end after it starts"): ``--since 1h --until 2h`` (two hours ago is
before one hour ago) exported nothing and exited 0, an empty batch a SIEM shipper takes for a
quiet hour. A usage error (exit 2) naming --until, before any database is asked."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from receiver.cli import main

# A database nobody answers at (never asked: a unit test may not connect; the integration
# tests of test_cli_audit.py export windows in order).
NOWHERE = {"REMEDIATOR_DATABASE_URL": "postgresql://u:p@127.0.0.1:1/db"}


@pytest.mark.parametrize(
    ("since", "until"),
    [
        ("1h", "2h"),
        ("1h", "1h"),
        ("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"),
        ("2026-01-01T01:00:00+01:00", "2026-01-01T00:00:00Z"),  # the same instant
    ],
)
def test_a_window_that_ends_before_it_starts_is_a_usage_error(since: str, until: str) -> None:
    result = CliRunner().invoke(
        main, ["audit", "export", "--since", since, "--until", until], env=NOWHERE
    )
    assert result.exit_code == 2, result.output
    assert "--until" in result.stderr
    assert "must end after it starts" in result.stderr
    assert "cannot connect" not in result.stderr
