"""What the bench's servers run with (bench/settings.py): ``--postgres-setting`` read and
refused as argparse would, a round's settings with the bench's own winning and the results
naming only what ran, and the service's ``worker.concurrency`` read as ``serve`` reads it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench.settings import (
    RESERVED_SETTINGS,
    add_postgres_setting_argument,
    postgres_setting,
    round_settings,
    settings_note,
    worker_shape,
)
from receiver.config import ConfigError, Settings


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("synchronous_commit=off", ("synchronous_commit", "off")),
        (" shared_buffers = 1GB ", ("shared_buffers", "1GB")),
        ("pg_stat_statements.track=all", ("pg_stat_statements.track", "all")),
        ("search_path=a=b", ("search_path", "a=b")),
        ("Work_Mem=8MB", ("work_mem", "8MB")),
        ("shared_preload_libraries=", ("shared_preload_libraries", "")),
    ],
)
def test_a_setting_is_a_lower_cased_name_and_its_value(text: str, pair: tuple[str, str]) -> None:
    assert postgres_setting(text) == pair


@pytest.mark.parametrize(
    "text", ["synchronous_commit", "=off", "a b=1", "a;b=1", "é=1", ".x=1", "x.=1", "a..b=1", ""]
)
def test_what_is_not_name_equals_value_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not NAME=VALUE"):
        postgres_setting(text)


@pytest.mark.parametrize("name", sorted(RESERVED_SETTINGS))
def test_how_the_bench_starts_and_reaches_postgresql_cannot_be_given(name: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="cannot be given"):
        postgres_setting(f"{name.upper()}=1")


def test_the_option_is_repeatable_and_refuses_with_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = argparse.ArgumentParser(prog="bench")
    add_postgres_setting_argument(parser)
    assert parser.parse_args([]).postgres_settings == []
    args = parser.parse_args(["--postgres-setting", "fsync=off", "--postgres-setting", "a.b=1"])
    assert args.postgres_settings == [("fsync", "off"), ("a.b", "1")]
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--postgres-setting", "port=5"])
    assert exit_.value.code == 2
    assert "port is how the bench starts and reaches its PostgreSQL" in capsys.readouterr().err


def test_the_last_of_a_name_counts_and_the_round_s_own_settings_win() -> None:
    required = {"shared_preload_libraries": "pg_stat_statements", "x.y": "on"}
    given = [
        ("fsync", "off"),
        ("shared_preload_libraries", "auto_explain"),
        ("fsync", "on"),
        ("x.y", "on"),
    ]
    started, applied, overridden = round_settings(given, required)
    assert started == {"fsync": "on", "shared_preload_libraries": "pg_stat_statements", "x.y": "on"}
    # x.y was given as the round needs it: applied, not overridden.
    assert applied == {"fsync": "on", "x.y": "on"}
    assert overridden == ["shared_preload_libraries"]
    assert settings_note(applied) == "PostgreSQL settings given: fsync=on, x.y=on"
    assert round_settings([], required) == (required, {}, [])
    assert settings_note({}) == ""


def _env(**more: str) -> dict[str, str]:
    return {"REMEDIATOR_WEBHOOK_TOKEN": "t" * 32, **more}


def test_the_worker_s_shape_is_read_as_serve_reads_it(tmp_path: Path) -> None:
    assert worker_shape(_env()) == f"worker.concurrency {Settings().worker_concurrency}"
    assert worker_shape(_env(REMEDIATOR_WORKER_CONCURRENCY="7")) == "worker.concurrency 7"
    config = tmp_path / "remediator.yaml"
    config.write_text("worker:\n  concurrency: 4\n  processes: 3\n")
    assert worker_shape(_env(REMEDIATOR_CONFIG=str(config))) == (
        "worker.concurrency 4 in each of 3 worker processes"
    )
    # The variable over the file, as serve has it.
    both = _env(REMEDIATOR_CONFIG=str(config), REMEDIATOR_WORKER_CONCURRENCY="9")
    assert worker_shape(both) == "worker.concurrency 9 in each of 3 worker processes"
    with pytest.raises(ConfigError, match="WORKER_CONCURRENCY"):
        worker_shape(_env(REMEDIATOR_WORKER_CONCURRENCY="0"))
