"""redis.requeue_dead_letters against a Redis that speaks TLS only (Debian's redis-server),
reached through a ``rediss://`` URL whose ``ssl_ca_certs`` is another CA's: the refused
certificate is said as TLS, with the URL's setting that fixes it (remediations/tls.py).

Before, redis-py's text ("Error 1 connecting to ... [SSL: CERTIFICATE_VERIFY_FAILED] ...
(_ssl.c:1006).") named no fix, and a step waiting on it read "did not answer ... failed reading
its answer" (an ``ssl.SSLError`` is an OSError of no errno known as a connection failure).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import redis.asyncio

from remediations.base import ActionContext, Clients, TransientActionError
from remediations.redis_queue.queues import Layout, QueueSpec, RedisQueues
from remediations.redis_queue.requeue import RequeueDeadLetters, RequeueParams
from remediations.retrying import RetryPolicy
from remediations.targets import Target
from remediations.unreached import Unreached, how_unreached
from tests.support import pki
from tests.support.redis_tls import write_redis_pki
from tests.support.redis_topologies import PASSWORD, data_node, debian_binary

pytestmark = pytest.mark.redis

EMAILS = QueueSpec(Layout.LIST, "emails", "emails:dead")
TARGET = Target("RedisQueue", "", "jobs/emails")
FAST = RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.01, jitter=0.0, request_timeout=3)


async def test_a_certificate_its_ssl_ca_certs_does_not_vouch_for_is_said_as_tls(
    tmp_path: Path,
) -> None:
    tls = write_redis_pki(tmp_path / "pki")
    other = pki.write(tmp_path / "other-ca.pem", pki.cert_pem(pki.make_ca()))
    node = data_node(debian_binary("redis-server"), tmp_path / "one", "one", tls=tls)
    node.start()
    try:
        base = f"rediss://:{PASSWORD}@127.0.0.1:{node.port}/0"
        client_files = f"ssl_certfile={tls.client_cert}&ssl_keyfile={tls.client_key}"
        wrong = RedisQueues(
            "jobs",
            redis.asyncio.Redis.from_url(f"{base}?ssl_ca_certs={quote(str(other))}&{client_files}"),
            {"emails": EMAILS},
        )
        action = RequeueDeadLetters(retry=FAST)
        ctx = ActionContext("run-1", False, Clients({"redis:jobs": wrong}))
        try:
            with pytest.raises(TransientActionError) as raised:
                await action.run(ctx, TARGET, RequeueParams(max_messages=10))
        finally:
            await wrong.close()
        assert not raised.value.may_have_acted
        assert how_unreached(raised.value) == Unreached(
            "could not be reached over TLS", "failed its TLS handshake"
        )
        said = (
            # redis-server sends its CA with its certificate: a self-signed one in the chain.
            "TLS: certificate verify failed: self-signed certificate in certificate chain; set "
            "the URL's ssl_ca_certs (redis.queues.jobs.url_file) to the PEM bundle"
        )
        assert said in raised.value.message, raised.value.message

        # Its own CA: the same server answers (nothing to requeue).
        right = RedisQueues(
            "jobs",
            redis.asyncio.Redis.from_url(
                f"{base}?ssl_ca_certs={quote(str(tls.ca))}&{client_files}"
            ),
            {"emails": EMAILS},
        )
        ctx = ActionContext("run-1", False, Clients({"redis:jobs": right}))
        try:
            result = await action.run(ctx, TARGET, RequeueParams(max_messages=10))
        finally:
            await right.close()
        assert result.message.startswith("nothing to requeue on jobs/emails"), result.message
    finally:
        node.stop()
