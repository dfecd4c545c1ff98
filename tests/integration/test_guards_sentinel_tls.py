"""The guards behind a Redis Sentinel (and one server) that speaks TLS only (Debian's
redis-server: a master, a replica and a sentinel with ``tls-port``, ``port 0`` and
``tls-auth-clients`` on, as Redis has it by default with TLS), configured as a user does:
``redis.sentinel.tls`` and the ``redis.tls.*`` files. The service reaches the sentinels and the
master over TLS with its client certificate; without TLS, without the certificate, or checking
the servers against another CA, the guards fail closed."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from receiver.config import load_settings
from receiver.guards.policy import AdmissionRequest, GuardUnavailable
from receiver.guards.redis_guards import Guards
from receiver.model import GuardSpec, NamespacePolicy, Target
from receiver.redis_connect import GuardRedis, connect_redis, mode_mismatch, write_refusal
from tests.support.redis_tls import RedisTls, write_redis_pki
from tests.support.redis_topologies import (
    MASTER_NAME,
    PASSWORD,
    SENTINEL_PASSWORD,
    SentinelSet,
    data_node,
    debian_binary,
)
from tests.support.served import ServeFactory, a_run_and_a_pause, stop

pytestmark = pytest.mark.redis

POD = Target("Deployment", "shop", "checkout")


def sentinel_env(topology: SentinelSet, tls: RedisTls | None, **more: str) -> dict[str, str]:
    """The settings of a user reaching ``topology``; ``tls``: the files, with TLS on."""
    env = {
        "REMEDIATOR_REDIS_MODE": "sentinel",
        "REMEDIATOR_REDIS_SENTINELS": topology.addresses,
        "REMEDIATOR_REDIS_SENTINEL_MASTER": MASTER_NAME,
        "REMEDIATOR_REDIS_PASSWORD": PASSWORD,
        "REMEDIATOR_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
    }
    if tls is not None:
        env |= {
            "REMEDIATOR_REDIS_SENTINEL_TLS": "true",
            "REMEDIATOR_REDIS_TLS_CA_FILE": str(tls.ca),
            "REMEDIATOR_REDIS_TLS_CERT_FILE": str(tls.client_cert),
            "REMEDIATOR_REDIS_TLS_KEY_FILE": str(tls.client_key),
        }
    return env | more


@contextlib.asynccontextmanager
async def connected(env: dict[str, str]) -> AsyncIterator[GuardRedis]:
    """The guards' client as ``serve`` builds it from ``env``, closed after."""
    built = connect_redis(load_settings(None, env), None)
    try:
        yield built
    finally:
        await built.close()


def request(run: str = "run-1") -> AdmissionRequest:
    return AdmissionRequest(run, "restart", POD, True, GuardSpec(600))


async def test_the_guards_admit_over_tls_with_the_client_certificate(
    redis_sentinel_tls: tuple[SentinelSet, RedisTls],
) -> None:
    topology, tls = redis_sentinel_tls
    async with connected(sentinel_env(topology, tls)) as built:
        assert built.tls
        guards = Guards(built.client, NamespacePolicy())
        assert (await guards.admit(request())).admitted
        # Another run on the target meets the first one's cooldown, read back over TLS.
        again = await guards.admit(request("run-2"))
        assert again.refusal is not None
        assert again.refusal.guard == "cooldown"
    with topology.master.client() as master:  # the master, over TLS: the lock landed there
        assert master.exists(guards.keys.lock(POD))


def _without_tls(topology: SentinelSet, tls: RedisTls, _: Path) -> dict[str, str]:
    return sentinel_env(topology, None)


def _without_the_client_certificate(
    topology: SentinelSet, tls: RedisTls, _: Path
) -> dict[str, str]:
    env = sentinel_env(topology, tls)
    del env["REMEDIATOR_REDIS_TLS_CERT_FILE"], env["REMEDIATOR_REDIS_TLS_KEY_FILE"]
    return env


def _checked_against_another_ca(topology: SentinelSet, tls: RedisTls, tmp: Path) -> dict[str, str]:
    other = write_redis_pki(tmp / "other-pki")
    return sentinel_env(topology, tls, REMEDIATOR_REDIS_TLS_CA_FILE=str(other.ca))


@pytest.mark.parametrize(
    "settings", [_without_tls, _without_the_client_certificate, _checked_against_another_ca]
)
async def test_the_guards_fail_closed_without_what_the_tls_servers_ask(
    redis_sentinel_tls: tuple[SentinelSet, RedisTls], tmp_path: Path, settings: object
) -> None:
    topology, tls = redis_sentinel_tls
    env = settings(topology, tls, tmp_path)  # type: ignore[operator]
    async with connected(env) as built:
        with pytest.raises(GuardUnavailable):
            await Guards(built.client, NamespacePolicy()).admit(request())
    with topology.master.client() as master:
        assert master.dbsize() == 0  # nothing was written


async def test_the_start_up_asks_the_sentinels_over_tls(
    redis_sentinel_tls: tuple[SentinelSet, RedisTls],
) -> None:
    """serve's check of the master's name reaches a TLS sentinel: it hears the sentinel say it
    monitors no such master (asked in plain TCP, a TLS sentinel never answers, and the check
    could only say nothing)."""
    topology, tls = redis_sentinel_tls
    env = sentinel_env(topology, tls, REMEDIATOR_REDIS_SENTINEL_MASTER="nope")
    async with connected(env) as built:
        problem = await mode_mismatch(built, load_settings(None, env), None)
        assert problem is not None
        assert "monitors no master named 'nope'" in problem


async def test_serve_keeps_its_guards_behind_a_tls_sentinel(
    serve: ServeFactory, redis_sentinel_tls: tuple[SentinelSet, RedisTls]
) -> None:
    topology, tls = redis_sentinel_tls
    served = serve(sentinel_env(topology, tls))
    assert "external Redis (REMEDIATOR_REDIS_MODE=sentinel)" in "".join(served.output)
    await a_run_and_a_pause(served)
    with topology.master.client() as master:
        assert master.hget("remediator:pause", "reason") == b"change freeze"
    assert stop(served) == 0


async def test_tls_to_sentinels_that_take_none_says_to_check_tls(
    redis_sentinel: SentinelSet, tmp_path: Path
) -> None:
    """The other way round: plain sentinels never answer a TLS handshake, and the start's
    write check says which setting speaks TLS, not only that nothing answered."""
    env = sentinel_env(redis_sentinel, write_redis_pki(tmp_path / "pki"))
    async with connected(env) as built:
        refusal = await write_refusal(built, Guards(built.client, NamespacePolicy()).probe, 2.0)
    assert refusal is not None
    assert "redis.sentinel.tls (REMEDIATOR_REDIS_SENTINEL_TLS) is on: check that" in refusal


async def test_one_tls_server_is_reached_with_the_files_of_the_settings(tmp_path: Path) -> None:
    """A rediss:// ``redis_url`` takes the same ``redis.tls.*`` files (no ``ssl_*`` query)."""
    tls = write_redis_pki(tmp_path / "pki")
    node = data_node(debian_binary("redis-server"), tmp_path / "one", "one", tls=tls)
    node.start()
    try:
        url = f"rediss://:{PASSWORD}@127.0.0.1:{node.port}/0"
        env = {
            "REMEDIATOR_REDIS_URL": url,
            "REMEDIATOR_REDIS_TLS_CA_FILE": str(tls.ca),
            "REMEDIATOR_REDIS_TLS_CERT_FILE": str(tls.client_cert),
            "REMEDIATOR_REDIS_TLS_KEY_FILE": str(tls.client_key),
        }
        built = connect_redis(load_settings(None, env), url)
        try:
            assert (await Guards(built.client, NamespacePolicy()).admit(request())).admitted
        finally:
            await built.close()
        with node.client() as client:
            assert client.dbsize() > 0
    finally:
        node.stop()
