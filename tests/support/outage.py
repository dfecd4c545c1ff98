"""A real outage of the kube-apiserver for the pipeline's own Kubernetes client, and a clock
the test moves on (the tests of receiver/pipeline/unreachable.py).

``outage`` is the pipeline's client and a switch: begun, the client is pointed at a port of
this host bound by the test and never listened on (the kernel refuses the connection), so
every request fails as one to a kube-apiserver that is down fails, and nothing reaches the
server; ended, the same client reaches the real kube-apiserver again.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.support.kube import ControlPlane

__all__ = ["Clock", "Outage", "closed_port", "outage"]


class Outage:
    """The pipeline's own Kubernetes client, and a switch that cuts it off its server."""

    def __init__(self, client: Any, closed_port: int) -> None:
        self.client = client
        self._server = client.configuration.host
        self._closed = f"https://127.0.0.1:{closed_port}"

    def begin(self) -> None:
        self.client.configuration.host = self._closed

    def end(self) -> None:
        self.client.configuration.host = self._server


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port of this host bound by this test and never listened on: connections to it are
    refused for as long as the test holds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
async def outage(control_plane: ControlPlane, closed_port: int) -> AsyncIterator[Outage]:
    client = await control_plane.admin_api_client()
    try:
        yield Outage(client, closed_port)
    finally:
        await client.close()


class Clock:
    """The pipeline's clock, moved on by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now
