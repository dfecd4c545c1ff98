"""An empty listen address is refused, naming the setting: asyncio reads "" as every interface,
so `REMEDIATOR_HOST=` (a template's unset value) or `serve --host ''` made a service whose
default is loopback listen on every address of the machine, and its banner said
`http://:9095`. Every interface is still one word away: 0.0.0.0 or ::."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from receiver.cli import main
from receiver.config import load_settings
from tests.support.config import refusal

WHAT_TO_DO = (
    "empty: that would listen on every interface; write 0.0.0.0 (or ::) to listen on all of"
    " them on purpose, or an address (default 127.0.0.1)"
)


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_host_variable_is_refused(value: str) -> None:
    assert refusal({"REMEDIATOR_HOST": value}) == f"REMEDIATOR_HOST: {WHAT_TO_DO}"


def test_an_empty_host_in_the_config_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "remediator.yaml"
    config.write_text('http:\n  host: ""\n')
    assert refusal({}, config) == f"http.host: {WHAT_TO_DO}"


def test_every_interface_said_on_purpose_is_taken() -> None:
    assert load_settings(None, {"REMEDIATOR_HOST": "0.0.0.0"}).host == "0.0.0.0"  # noqa: S104
    assert load_settings(None, {"REMEDIATOR_HOST": "::"}).host == "::"


def test_serve_with_an_empty_host_option_exits_2_before_starting(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--host", ""], env={"REMEDIATOR_DATA_DIR": str(tmp_path / "data")}
    )
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: --host: {WHAT_TO_DO}\n"
    assert not (tmp_path / "data").exists()
