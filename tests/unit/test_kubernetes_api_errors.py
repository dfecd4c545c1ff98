"""``is_api_exception``: the Kubernetes client's ApiException recognised without importing it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from kubernetes_asyncio.client.exceptions import ApiException, ApiValueError

from remediations.kubernetes.api_errors import is_api_exception

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("exc", [ApiException(status=404, reason="Not Found"), ApiException()])
def test_a_client_api_exception_is_recognised(exc: BaseException) -> None:
    assert is_api_exception(exc)


class _Answered(Exception):
    """Shaped like an ApiException (a status, a body), but not one."""

    status = 404
    body = b"{}"


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad"),
        _Answered(),
        ApiValueError("the client's own, not an answer"),
        aiohttp.ClientConnectionError(),
        TimeoutError(),
        None,
        ApiException,  # the class, not an exception
    ],
)
def test_anything_else_is_not(exc: object) -> None:
    assert not is_api_exception(exc)


def test_the_check_does_not_import_the_client() -> None:
    code = (
        "import sys; from remediations.kubernetes.api_errors import is_api_exception; "
        "assert not is_api_exception(ValueError()); "
        "sys.exit(any(m.split('.')[0] == 'kubernetes_asyncio' for m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
