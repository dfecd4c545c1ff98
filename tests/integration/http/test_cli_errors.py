"""What the CLI says when a running server refuses its request: the option the user typed, not
the server's name for it (``report --since`` is the API's ``from``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from receiver.cli import main
from receiver.store import Store
from tests.support.http import OPERATOR_TOKEN, AiohttpClient, Client, default_settings
from tests.support.review_app import review_app

pytestmark = [pytest.mark.postgres]


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, store: Store) -> Client:
    return await aiohttp_client(review_app(store, default_settings()))


async def _cli(client: Client, *args: str) -> Result:
    url = str(client.make_url("")).rstrip("/")
    env = {"REMEDIATOR_OPERATOR_TOKEN": OPERATOR_TOKEN}
    return await asyncio.to_thread(CliRunner().invoke, main, [*args, "--url", url], env=env)


@pytest.mark.parametrize(
    ("args", "option", "says"),
    [
        (("report", "--since", "1y"), "--since", "'1y' is neither"),
        (("report", "--until", "soon"), "--until", "'soon' is neither"),
        (("report", "--gap", "1ms"), "--gap", "the gap must be between 1s and 7d"),
        (("runs", "--cursor", "zz"), "--cursor", "invalid cursor"),
        (("jobs", "--run", "not-a-uuid"), "--run", "run_id must be"),
    ],
)
async def test_a_refused_option_is_named_as_the_user_typed_it(
    client: Client, args: tuple[str, ...], option: str, says: str
) -> None:
    result = await _cli(client, *args)
    assert result.exit_code == 1, result.output
    assert f"HTTP 400 ({option}): {says}" in result.stderr, result.stderr
    # Not the API's names: `from`, `to`, `run_id`.
    assert not any(f"({name})" in result.stderr for name in ("from", "to", "run_id"))
    assert "from: " not in result.stderr


LONG = "x" * 2000


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("runs", "--outcome", LONG), "HTTP 400 (--outcome): unknown outcome 'xxxx"),
        (("runs", "--since", LONG), "HTTP 400 (--since): 'xxxx"),
        (("runs", "--rule", "r", "--since", LONG + "Z"), "HTTP 400 (--since): 'xxxx"),
        (("jobs", "--kind", LONG), "HTTP 400 (--kind): unknown kind 'xxxx"),
        (("events", "--state", LONG), "Invalid value for '--state': 'xxxx"),
        (("approvals", "list", "--state", LONG), "Invalid value for '--state': 'xxxx"),
    ],
)
async def test_a_long_filter_is_not_echoed_whole(
    client: Client, args: tuple[str, ...], says: str
) -> None:
    """A filter value pasted by mistake (a whole file) came back whole in the error, from the
    server (unknown outcome, kind; since) and from click (a --state choice): now its start."""
    result = await _cli(client, *args)
    assert result.exit_code in (1, 2), result.output
    assert says in result.stderr, result.stderr
    assert "x" * 100 not in result.stderr, result.stderr
    assert len(result.stderr) < 600, result.stderr


async def test_a_token_file_saved_with_a_byte_order_mark_is_read_without_it(
    client: Client, tmp_path: Path
) -> None:
    """Notepad's "UTF-8 with BOM": the mark went into the bearer token and the server said only
    401, "the server does not accept REMEDIATOR_OPERATOR_TOKEN(_FILE)"."""
    token = tmp_path / "operator-token"
    token.write_bytes(b"\xef\xbb\xbf" + OPERATOR_TOKEN.encode() + b"\r\n")
    url = str(client.make_url("")).rstrip("/")
    env = {"REMEDIATOR_OPERATOR_TOKEN_FILE": str(token)}
    result = await asyncio.to_thread(
        CliRunner().invoke, main, ["runs", "--json", "--url", url], env=env
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["runs"] == []


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("events", "--fingerprint", "x" * 9000), "--fingerprint"),
        (("runs", "--rule", "r", "--target", "x" * 100_000), "--target"),
        (("report", "--since", "x" * 9000), "--since"),
    ],
)
async def test_a_filter_longer_than_a_url_takes_is_named_before_sending(
    client: Client, args: tuple[str, ...], option: str
) -> None:
    """The server reads a request line of at most 8190 bytes: a longer filter was answered
    "HTTP 400: Bad Request", naming nothing to fix."""
    result = await _cli(client, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {option}: "), result.stderr
    assert "longer than a server reads in a URL" in result.stderr
    assert "x" * 100 not in result.stderr
