"""How tests react to a missing server: skip on a developer's machine, fail in CI."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def server_missing(what: str) -> NoReturn:
    """A test that needs ``what`` and cannot have it: skipped locally, a failure when CI is set."""
    message = f"{what} is not available"
    if in_ci():
        pytest.fail(f"{message} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(message)
