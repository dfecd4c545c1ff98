"""The guards and the Redis under them, a real one: they fail closed (GuardUnavailable) while
it is down, hangs or refuses writes (saying what the server said) and recover after, reload
their scripts after a script flush or a fresh server, and work with a client that decodes
replies; serve's start-up check of the same write says what the server said, within its
bound."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis.asyncio

from receiver.assembly import redis_checks
from receiver.config import Settings
from receiver.config.redis_mode import RedisMode
from receiver.embedded.process import free_port
from receiver.guards.policy import GuardSettings, GuardUnavailable
from receiver.guards.redis_guards import Guards
from receiver.model import NamespacePolicy
from receiver.redis_connect import GuardRedis, connect_redis, write_refusal
from tests.support.guards import (
    MakeGuards,
    admit_and_release,
    refused_by,
    request,
)
from tests.support.lagging_relay import lagging_relay
from tests.support.polling import eventually, eventually_blocking
from tests.support.redis import RedisServer, writes_need_a_replica
from tests.support.redis_fixtures import acl_user
from tests.support.redis_topologies import PASSWORD, RedisNode, debian_binary

pytestmark = pytest.mark.redis


async def test_scripts_are_reloaded_after_script_flush(
    make_guards: MakeGuards, redis_client: redis.asyncio.Redis
) -> None:
    guards = make_guards()
    await admit_and_release(guards, request())
    await redis_client.script_flush()
    await admit_and_release(guards, request(rule="again"))


async def test_fails_closed_while_redis_is_down_and_recovers(
    redis_controlled: RedisServer, make_guards: MakeGuards
) -> None:
    guards = make_guards(timeout_s=3)
    await admit_and_release(guards, request())
    redis_controlled.stop()
    try:
        with pytest.raises(GuardUnavailable):
            await guards.admit(request(rule="while-down"))
        with pytest.raises(GuardUnavailable):
            await guards.probe()
        with pytest.raises(GuardUnavailable):
            await guards.record_result("r", False)
        with pytest.raises(GuardUnavailable):
            await guards.pause(None, "x")
        with pytest.raises(GuardUnavailable):
            await guards.status()
    finally:
        redis_controlled.start()
    # A fresh server: no cached scripts, no state. EVALSHA falls back to loading them.
    await guards.probe()
    await admit_and_release(guards, request(rule="after-restart"))


async def test_a_master_refusing_writes_fails_closed_says_why_and_is_not_ready(
    redis_controlled: RedisServer, make_guards: MakeGuards, redis_client: redis.asyncio.Redis
) -> None:
    """``min-replicas-to-write 1`` with no replica (README's advice, the only replica gone):
    the master answers PING and refuses every write with NOREPLICAS. The guards fail closed
    quoting the server (redis-py 8's repr alone says ``server:ResponseError``), and their
    readiness probe fails too, where a PING passed."""
    guards = make_guards()
    await guards.probe()
    with writes_need_a_replica(redis_controlled.url):
        assert await redis_client.ping()
        with pytest.raises(GuardUnavailable, match="NOREPLICAS Not enough good replicas"):
            await guards.admit(request(rule="no-replica"))
        with pytest.raises(GuardUnavailable, match="NOREPLICAS Not enough good replicas"):
            await guards.probe()
    await guards.probe()
    await admit_and_release(guards, request(rule="no-replica"))


async def test_the_start_up_write_check_quotes_a_refusal_within_its_bound(
    redis_controlled: RedisServer, make_guards: MakeGuards, redis_client: redis.asyncio.Redis
) -> None:
    """``write_refusal``, serve's start-up check (the readiness probe's write): nothing on a
    server that takes writes; on NOREPLICAS, the server's reply and what to check; on a hung
    server, an answer within its bound (the readiness timeout), not the guards' own 30 s."""
    built = GuardRedis(redis_client, "here", RedisMode.STANDALONE)
    guards = make_guards(timeout_s=30)
    assert await write_refusal(built, guards.probe, 5) is None
    with writes_need_a_replica(redis_controlled.url):
        refusal = await write_refusal(built, guards.probe, 5)
    assert refusal is not None
    assert "does not take a write: ResponseError: NOREPLICAS Not enough good replicas" in refusal
    assert "fewer replicas in sync than its min-replicas-to-write" in refusal
    redis_controlled.freeze()
    try:
        started = time.monotonic()
        refusal = await write_refusal(built, guards.probe, 0.5)
        waited = time.monotonic() - started
    finally:
        redis_controlled.thaw()
    assert refusal is not None
    assert "within http.readiness_timeout (REMEDIATOR_READINESS_TIMEOUT), 0.5 s" in refusal
    assert waited < 10, waited


async def test_the_start_up_checks_of_a_hung_redis_wait_for_the_longest_not_their_sum(
    redis_controlled: RedisServer,
) -> None:
    """``redis_checks``: serve's mode, durability and write checks of a Redis that hangs
    (connections open, no answer) are made at once. The mode check waits its 5 s socket
    timeout, and the write check as long (a first write, which opens a connection, has that
    bound too; the readiness timeout, here 4 s, is for a write on an open one): one after the
    other that was 9 s or more before the start went on; at once, about 5 s. Neither stops the
    start: the mode is unknown (None), and the write check says there was no answer."""
    settings = Settings(readiness_timeout_seconds=4, allow_unauthenticated=True)
    built = connect_redis(settings, redis_controlled.url)
    guards = Guards(built.client, NamespacePolicy(), GuardSettings())
    try:
        redis_controlled.freeze()
        try:
            started = time.monotonic()
            mismatch, durability, eviction, refusal = await redis_checks(
                built, guards, settings, redis_controlled.url, describe=True
            )
            waited = time.monotonic() - started
        finally:
            redis_controlled.thaw()
    finally:
        await built.close()
    assert mismatch is None
    assert durability is None
    assert eviction is None
    assert refusal is not None
    assert "no answer within http.readiness_timeout (REMEDIATOR_READINESS_TIMEOUT), 4 s" in refusal
    # 9 s and more when made one after the other; about 5 s at once.
    assert 4 <= waited < 8, waited


async def test_the_start_up_checks_of_a_distant_redis_that_takes_writes_say_nothing(
    redis_url: str, redis_server: RedisServer
) -> None:
    """A Redis 0.5 s away (each round trip), which takes every write within the readiness
    timeout (2 s) on a connection already open, as /readyz's are. Made at once, the write check
    opened a connection of its own: its handshake (four round trips) and the SET took 2.5 s,
    and the start said ``does not take a write: no answer within ... 2 s`` and that /readyz is
    503, when /readyz then answered 200. One after the other it had the mode check's open
    connection. The check now gives a new connection's first write the mode check's bound
    (5 s), and times the write again on it."""
    settings = Settings(allow_unauthenticated=True)  # readiness timeout: its default, 2 s
    assert settings.readiness_timeout_seconds == 2
    async with lagging_relay(redis_server.host, redis_server.port, rtt_s=0.5) as port:
        url = f"redis://127.0.0.1:{port}/0"
        built = connect_redis(settings, url)
        guards = Guards(built.client, NamespacePolicy(), GuardSettings())
        try:
            started = time.monotonic()
            found = await redis_checks(built, guards, settings, url, describe=True)
            waited = time.monotonic() - started
            # It does take writes within the bound on an open connection, as /readyz asks.
            probed = time.monotonic()
            await guards.probe()
            probe_s = time.monotonic() - probed
        finally:
            await built.close()
    assert found == (None, None, None, None), found
    assert probe_s < settings.readiness_timeout_seconds, probe_s
    assert waited < 5, waited


async def test_the_start_up_write_check_on_an_acl_without_the_ready_key_names_the_acl(
    redis_url: str, redis_client: redis.asyncio.Redis
) -> None:
    """A user whose ACL allows the guards' keys but not the readiness key: the line names the
    ACL, and does not say that every admission fails (they go on; only /readyz is 503)."""
    # Every guard key (pause, rate:, released:, cooldown: ...), not remediator:ready.
    keys = ["remediator:[^r]*", "remediator:rate:*", "remediator:released:*"]
    async with acl_user(redis_client, redis_url, "noready", keys) as limited:
        guards = Guards(limited, NamespacePolicy(), GuardSettings(timeout_s=5))
        refusal = await write_refusal(
            GuardRedis(limited, "here", RedisMode.STANDALONE), guards.probe, 5
        )
        admitted = await guards.admit(request(cooldown_s=60, max_runs=1, max_runs_per_s=60))
    assert refusal is not None
    assert "does not take a write: NoPermissionError:" in refusal
    assert "ACL refuses the readiness check's key" in refusal
    assert "every admission fails closed if the guards' keys are refused too" in refusal
    assert "until it does, every admission fails closed" not in refusal
    assert "noready-password" not in refusal
    # What the line says of admissions holds: this one went through.
    assert admitted.admitted, admitted


async def test_the_start_up_write_check_on_an_acl_refusing_set_names_the_command(
    redis_url: str, redis_client: redis.asyncio.Redis
) -> None:
    """A user whose ACL allows the guards' keys but not the SET command: the line names the
    command, not the readiness key (which the user has: ~remediator:* was said to fix it)."""
    async with acl_user(
        redis_client, redis_url, "noset", ["remediator:*"], ("+@all", "-set")
    ) as limited:
        guards = Guards(limited, NamespacePolicy(), GuardSettings(timeout_s=5))
        refusal = await write_refusal(
            GuardRedis(limited, "here", RedisMode.STANDALONE), guards.probe, 5
        )
    assert refusal is not None
    assert "NoPermissionError: this user has no permissions to run the 'set' command" in refusal
    assert "the Redis user's ACL refuses the 'set' command" in refusal
    assert "readiness check's key" not in refusal
    assert "every admission fails closed if the guards' commands are refused too" in refusal


async def test_the_start_up_write_check_on_a_wrong_password_names_the_password_settings(
    redis_url: str, redis_client: redis.asyncio.Redis
) -> None:
    """A password the server does not take: the line names the settings that give it, and
    never the password (it quoted the server alone, which names no setting)."""
    async with acl_user(redis_client, redis_url, "someone", ["remediator:*"]):
        wrong = redis.asyncio.Redis.from_url(
            redis_url, username="someone", password="not-the-password"
        )
        try:
            guards = Guards(wrong, NamespacePolicy(), GuardSettings(timeout_s=5))
            refusal = await write_refusal(
                GuardRedis(wrong, "here", RedisMode.STANDALONE), guards.probe, 5
            )
        finally:
            await wrong.aclose()
    assert refusal is not None
    assert "does not take a write: AuthenticationError:" in refusal
    assert (
        "check the password (and user name, with an ACL user) in redis_url"
        " (REMEDIATOR_REDIS_URL), or redis.password (REMEDIATOR_REDIS_PASSWORD)"
    ) in refusal
    assert "not-the-password" not in refusal


async def test_fails_closed_when_redis_hangs_and_a_retry_of_the_run_passes(
    redis_controlled: RedisServer, make_guards: MakeGuards, redis_client: redis.asyncio.Redis
) -> None:
    guards = make_guards(timeout_s=0.5)
    req = request(cooldown_s=60, max_runs=1, max_runs_per_s=60)
    redis_controlled.freeze()
    try:
        with pytest.raises(GuardUnavailable):
            await guards.admit(req)
    finally:
        redis_controlled.thaw()
    # The timed-out script still runs once the server wakes up (its command was in the
    # server's socket buffer): wait until it has taken the target's lock, so the retry comes
    # after it, as the pipeline's retry does (seconds later). Retrying the same run is then not
    # refused by its own cooldown, rate slot, budget slot or lock. (A retry sent at once, while
    # the stale script may still be queued, can be overtaken by it: a CI run on a slow host once
    # saw the release find the stale script's token. The stale script is now refused there;
    # test_guard_lock_races.py lands it after the retry's admission and after its release.)
    await eventually(
        redis_client.keys,
        lambda keys: any(b"lock:" in key for key in keys),
        what="the timed-out admission's lock",
    )
    again = await guards.admit(req)
    assert again.admitted, again.refusal
    assert await guards.release(req, again)
    refused_by(await guards.admit(request(cooldown_s=60)), "cooldown")


async def test_works_with_a_decoding_client(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url, decode_responses=True)
    try:
        guards = Guards(client, NamespacePolicy(), GuardSettings())
        await admit_and_release(guards, request(cooldown_s=60))
        refused_by(await guards.admit(request(cooldown_s=60)), "cooldown")
        await guards.record_result("r", False)
        await guards.pause(None, "x")
        status = await guards.status()
        assert status["paused"] is True
        assert "r" in status["breakers"]
    finally:
        await client.aclose()


async def test_a_server_that_cannot_snapshot_fails_closed_and_is_retried(tmp_path: Path) -> None:
    """A server whose last snapshot failed refuses writes with MISCONF (its default
    stop-writes-on-bgsave-error, with a save point) until one succeeds. That is its state, not
    the guards' input: an admission is unavailable (the event is retried), not refused by a
    failed script (its run failed for good), and it passes once the server can save again."""
    port = free_port()
    node = RedisNode(
        "misconf",
        port,
        tmp_path,
        [
            str(debian_binary("redis-server")),
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)),
            *("--save", "3600 1", "--appendonly", "no", "--requirepass", PASSWORD),
            # So that the test may point the snapshot at a directory nobody can write to.
            *("--enable-protected-configs", "yes"),
        ],
        PASSWORD,
    )
    node.start()
    sync = node.client()
    client = redis.asyncio.Redis(port=port, password=PASSWORD)
    try:
        guards = Guards(client, NamespacePolicy(), GuardSettings())
        await admit_and_release(guards, request(rule="before"))
        sync.config_set("dir", "/proc")  # no file can be created there, not even by root
        sync.bgsave()
        eventually_blocking(
            lambda: sync.info("persistence")["rdb_last_bgsave_status"] == "err",
            what="the snapshot to fail",
        )
        with pytest.raises(GuardUnavailable, match="MISCONF"):
            await guards.admit(request(rule="cannot-save"))
        with pytest.raises(GuardUnavailable, match="MISCONF"):
            await guards.probe()
        sync.config_set("dir", str(tmp_path))
        sync.bgsave()
        eventually_blocking(
            lambda: sync.info("persistence")["rdb_last_bgsave_status"] == "ok",
            what="the snapshot to succeed",
        )
        await guards.probe()
        await admit_and_release(guards, request(rule="cannot-save"))
    finally:
        await client.aclose()
        sync.close()
        node.stop()


async def test_a_rediss_url_to_a_server_without_tls_says_to_check_tls(
    redis_server: RedisServer,
) -> None:
    """A server without TLS reads the TLS handshake as the start of a command and waits for
    the rest: the start said only "no answer within ... s", in every mode. It now names the
    URL's TLS as what to check; a redis:// URL to the same server is not told so."""
    settings = Settings(allow_unauthenticated=True)
    url = f"rediss://{redis_server.host}:{redis_server.port}/0"
    built = connect_redis(settings, url)
    guards = Guards(built.client, NamespacePolicy(), GuardSettings(timeout_s=30))
    try:
        refusal = await write_refusal(built, guards.probe, 0.5, opening_s=0.5)
    finally:
        await built.close()
    assert refusal is not None
    assert "does not take a write: no answer within" in refusal
    assert "is rediss://, which speaks TLS: check that the server (and that port)" in refusal
    plain = connect_redis(settings, f"redis://{redis_server.host}:{redis_server.port}/0")
    assert not plain.tls
    await plain.close()
