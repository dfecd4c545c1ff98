"""Configuration refused at load: the message a test checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ConfigError, load_settings

__all__ = ["refusal"]


def refusal(environ: dict[str, str], config: Path | None = None) -> str:
    """The ConfigError message ``load_settings(config, environ)`` raises (fails the test if it
    raises none)."""
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ)
    return caught.value.message
