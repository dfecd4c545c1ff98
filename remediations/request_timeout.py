"""The aiohttp timeout of one request to a remote system (``request_timeout``), bounding its
connection on its own so that a connection never made says so.

aiohttp raises ``ConnectionTimeoutError`` (a ``ServerTimeoutError``) only for its ``connect``
or ``sock_connect`` timeout. A request bounded by ``total`` alone that cannot connect (an
address whose packets are dropped: a firewall, a host gone, a listen queue that is full) runs
out its total timer inside the connector, and the timer's cancellation comes out as a plain
``asyncio.TimeoutError``, the same error as a request sent and never answered (measured with
aiohttp 3.14 and kubernetes_asyncio 36, whose float ``_request_timeout`` is such a ``total``:
tests/integration/test_connect_timeouts.py). The actions judge a plain timeout as one that may
have acted (``remediations.kubernetes.retry.failure_may_have_acted``,
``remediations.http.post.failure_may_have_acted``), so a write to an API server that had
dropped off the network failed at once as one that may have acted, where one refused waited
for the server (receiver/pipeline/unreachable.py).
"""

from __future__ import annotations

import aiohttp

__all__ = ["request_timeout"]


def request_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """One request's timeout: ``seconds`` from the start of its connection to the last byte of
    its answer (``total``), its connection (a pooled one, or a new one with its TLS handshake)
    within half of that (``connect``). The connect bound fires first, so a connection never
    made raises ``aiohttp.ConnectionTimeoutError``, nothing sent; a request that connected and
    then ran out of time raises ``asyncio.TimeoutError`` as before. Half: a reachable server
    connects in milliseconds, and a request that took half its time to connect had little
    left for its answer; the retries give it another try."""
    return aiohttp.ClientTimeout(total=seconds, connect=seconds / 2)
