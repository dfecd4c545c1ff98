"""Configuration files written for a test, and configuration refused at load: the message a
test checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ConfigError, load_settings

__all__ = ["config", "refusal", "write"]


def refusal(environ: dict[str, str], config: Path | None = None) -> str:
    """The ConfigError message ``load_settings(config, environ)`` raises (fails the test if it
    raises none)."""
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ)
    return caught.value.message


def write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` (UTF-8) and return ``path``: a configuration or secret file."""
    path.write_text(text, encoding="utf-8")
    return path


def config(tmp_path: Path, text: str) -> Path:
    """Write ``text`` as ``tmp_path/config.yaml`` (a settings file) and return its path."""
    return write(tmp_path / "config.yaml", text)
