"""Unit tests need no servers: the rule is enforced here, not hoped for.

While a test in tests/unit is set up, run and torn down, opening a network connection (or a
listening socket) or starting the service as a subprocess raises, and the test fails even when
the code under test swallows the error (a client that retries, say); asking for a server
fixture fails it before it starts. A test that needs PostgreSQL, Redis, the kube-apiserver, a local
HTTP peer or a subprocess of the service belongs in tests/integration; with Prometheus or
Alertmanager, in tests/e2e. Reading the repository's files is fine.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

# Fixtures that start or reach a server (tests/support/*_fixtures.py and friends).
SERVER_FIXTURES = frozenset(
    {
        "pg_server",
        "pg_controlled",
        "pg_template",
        "database_url",
        "empty_database_url",
        "store",
        "redis_server",
        "redis_controlled",
        "redis_url",
        "redis_client",
        "control_plane",
        "kube_admin",
        "kube_namespace",
        "make_deployment",
        "make_harness",
        "make_client",
        "make_edge",
        "intake",
        "approval_env",
        "peer",
        "serve",
        "embedded_dir",
        "browser",
    }
)

_NETWORK_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


class NetworkInUnitTest(AssertionError):
    """A unit test (or what it calls) opened a network connection or a listening socket."""


def _is_the_service(args: Any) -> bool:
    argv = [args] if isinstance(args, str | bytes) else list(args)
    text = " ".join(str(a) for a in argv)
    return "receiver.cli" in text or any(str(a).endswith("/remediator") for a in argv)


@contextmanager
def _no_network(nodeid: str) -> Iterator[list[str]]:
    """Within the block, connect/connect_ex/bind on a network socket and starting the service
    as a subprocess raise; the attempts are listed in what it yields (so a swallowed error
    still fails the test)."""
    attempts: list[str] = []
    real = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex", "bind")}
    real_popen = subprocess.Popen.__init__

    def popen(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        if _is_the_service(args):
            attempts.append(f"subprocess {args!r}")
            raise NetworkInUnitTest(
                f"{nodeid}: starts the service ({args!r}) in a unit test; a test of the "
                "running service belongs in tests/integration"
            )
        real_popen(self, args, *rest, **kwargs)

    def guarded(name: str) -> Any:
        def refuse(self: socket.socket, address: Any, *args: Any) -> Any:
            if self.family not in _NETWORK_FAMILIES:
                return real[name](self, address, *args)
            attempt = f"socket.{name}({address!r})"
            attempts.append(attempt)
            raise NetworkInUnitTest(
                f"{nodeid}: {attempt} in a unit test; tests/unit needs no servers, so a test "
                "that talks to one belongs in tests/integration (or tests/e2e)"
            )

        return refuse

    for name in real:
        setattr(socket.socket, name, guarded(name))
    subprocess.Popen.__init__ = popen  # type: ignore[method-assign]
    try:
        yield attempts
    finally:
        for name, method in real.items():
            setattr(socket.socket, name, method)
        subprocess.Popen.__init__ = real_popen  # type: ignore[method-assign]


def _guarded_phase(item: pytest.Item) -> Generator[None, object, object]:
    with _no_network(item.nodeid) as attempts:
        result = yield
    if attempts:
        raise NetworkInUnitTest(f"{item.nodeid} tried to use the network: {attempts}")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, object, object]:
    servers = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    if servers:
        raise NetworkInUnitTest(
            f"{item.nodeid} uses {sorted(servers)}: tests/unit needs no servers; "
            "move it to tests/integration (or tests/e2e)"
        )
    return (yield from _guarded_phase(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    return (yield from _guarded_phase(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    if nextitem is None:
        # The session's last teardown also finishes the session's fixtures (the servers other
        # folders' tests started), which may well connect to them: not this test's doing.
        return (yield)
    return (yield from _guarded_phase(item))
