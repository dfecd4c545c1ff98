"""The ``remediator test`` command on real PostgreSQL and Redis (the ones the test session runs,
given as ``--database-url``/``--redis-url``). The exit codes: 0 passed, 1 failed, 2 a bad test
file or a bad option (a database URL asyncpg cannot read, said without its password)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from tests.support.postgres import PostgresServer
from tests.support.redis import RedisServer
from tests.support.ruletest import PASSING, RULES, line_of

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _invoke(
    tmp_path: Path, pg_server: PostgresServer, redis_server: RedisServer, *files: str
) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        [
            "test",
            *files,
            "--database-url",
            pg_server.url("postgres"),
            "--redis-url",
            redis_server.url,
        ],
    )
    return result.exit_code, result.output


def test_the_command_exits_0_when_every_test_passes_and_1_when_one_fails(
    tmp_path: Path, pg_server: PostgresServer, redis_server: RedisServer
) -> None:
    redis_server.ensure_running()
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "good.yaml").write_text(PASSING)
    (tmp_path / "bad.yaml").write_text(PASSING.replace("outcome: verified", "outcome: failed"))
    code, output = _invoke(tmp_path, pg_server, redis_server, str(tmp_path / "good.yaml"))
    assert code == 0, output
    assert output.splitlines()[-1].startswith("1 test(s) in 1 file(s): 1 passed, 0 failed")
    code, output = _invoke(
        tmp_path, pg_server, redis_server, str(tmp_path / "good.yaml"), str(tmp_path / "bad.yaml")
    )
    assert code == 1, output
    line = line_of(PASSING, "outcome: verified")
    assert f"{tmp_path / 'bad.yaml'}:{line}: at the end: run 1 (" in output
    assert output.splitlines()[-1].startswith("2 test(s) in 2 file(s): 1 passed, 1 failed")


def test_a_bad_test_file_is_exit_2_naming_file_and_line_and_nothing_runs(
    tmp_path: Path, pg_server: PostgresServer, redis_server: RedisServer
) -> None:
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "good.yaml").write_text(PASSING)
    (tmp_path / "bad.yaml").write_text(PASSING.replace("firing: other}", "fireing: other}"))
    code, output = _invoke(
        tmp_path, pg_server, redis_server, str(tmp_path / "good.yaml"), str(tmp_path / "bad.yaml")
    )
    assert code == 2, output
    line = line_of(PASSING, "firing: other}")
    assert (
        f"{tmp_path / 'bad.yaml'}:{line}: tests[0].timeline[1]: unknown field 'fireing'" in output
    )
    assert "PASS" not in output
    assert "1 error(s) in the test files; no test was run" in output


def test_a_database_url_asyncpg_cannot_read_is_a_usage_error_without_its_password(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    # The scheme is right (the option's check passes); asyncpg refuses sslmode when it connects.
    redis_server.ensure_running()
    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "good.yaml").write_text(PASSING)
    url = "postgresql://u:s3cr%40t-pw@127.0.0.1:1/db?sslmode=bogus"
    result = CliRunner().invoke(
        main,
        [
            "test",
            str(tmp_path / "good.yaml"),
            "--database-url",
            url,
            "--redis-url",
            redis_server.url,
        ],
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: --database-url: not a PostgreSQL URL: `sslmode`")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "s3cr" not in result.output
