"""Which server the CLI calls and which token it sends: a configured operator token to the
URL given, the data directory's generated token only to the server that owns the directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from receiver.cli.client import operator_target
from receiver.cli.common import UserError
from receiver.config import Settings
from receiver.embedded.owner import OwnerLock, OwnerRecord, live_owner, write_record

SERVER = "http://127.0.0.1:9311"
TOKEN = "generated-operator-token-0123456789"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    (tmp_path / "operator-token").write_text(TOKEN + "\n")
    return tmp_path


@pytest.fixture
def owned(data_dir: Path) -> Iterator[OwnerLock]:
    """The directory owned by this process, as a running serve owns it."""
    lock = OwnerLock(data_dir)
    assert lock.try_acquire()
    write_record(data_dir, OwnerRecord(os.getpid(), "remediator serve", True, 1, 2, SERVER))
    yield lock
    lock.release()


def test_the_generated_token_goes_to_the_server_owning_the_directory(
    data_dir: Path, owned: OwnerLock
) -> None:
    settings = Settings(data_dir=data_dir)
    for url in (None, SERVER, SERVER + "/", "HTTP://127.0.0.1:9311"):
        base, headers, _ = operator_target(settings, url)
        assert base == SERVER
        assert headers == {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9312", "http://localhost:9311", "https://127.0.0.1:9311"]
)
def test_never_to_another_server(data_dir: Path, owned: OwnerLock, url: str) -> None:
    base, headers, hint = operator_target(Settings(data_dir=data_dir), url)
    assert base == url
    assert headers == {}
    assert f"is for {SERVER} (PID {os.getpid()} (remediator serve)) only" in hint


def test_not_when_the_owner_is_gone(data_dir: Path) -> None:
    # A record left by a serve that was killed: no lock is held any more.
    write_record(data_dir, OwnerRecord(os.getpid(), "remediator serve", True, 1, 2, SERVER))
    assert live_owner(data_dir) is None
    base, headers, hint = operator_target(Settings(data_dir=data_dir, port=9400), None)
    assert base == "http://127.0.0.1:9400"
    assert headers == {}
    assert "REMEDIATOR_OPERATOR_TOKEN_FILE" in hint


def test_a_configured_token_goes_where_it_is_told(data_dir: Path, owned: OwnerLock) -> None:
    settings = Settings(data_dir=data_dir, operator_token=SecretStr("mine-0123456789abcdef"))
    base, headers, _ = operator_target(settings, "http://10.0.0.5:9095")
    assert base == "http://10.0.0.5:9095"
    assert headers == {"Authorization": "Bearer mine-0123456789abcdef"}
    # Nothing else names a server: the serve running on this data directory, not port 9095.
    base, _, _ = operator_target(settings, None)
    assert base == SERVER
    # A configured host or port names one.
    for where in ({"port": 9400}, {"host": "127.0.0.2"}):
        base, _, _ = operator_target(settings.model_copy(update=where), None)
        assert base == Settings(**where).local_url()


def test_a_configured_token_without_a_serve_on_the_directory(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, operator_token=SecretStr("mine-0123456789abcdef"))
    assert operator_target(settings, None)[0] == "http://127.0.0.1:9095"


def test_an_unreadable_generated_token_is_a_clear_error(data_dir: Path, owned: OwnerLock) -> None:
    (data_dir / "operator-token").unlink()
    (data_dir / "operator-token").mkdir()
    with pytest.raises(UserError, match="cannot read the operator token"):
        operator_target(Settings(data_dir=data_dir), None)


def test_a_serve_with_configured_operators_generated_no_token(
    data_dir: Path, owned: OwnerLock
) -> None:
    (data_dir / "operator-token").unlink()
    base, headers, hint = operator_target(Settings(data_dir=data_dir), None)
    assert (base, headers) == (SERVER, {})
    assert "its operators are configured (REMEDIATOR_OPERATOR_TOKENS_DIR)" in hint
    assert "set REMEDIATOR_OPERATOR_TOKEN_FILE" in hint
