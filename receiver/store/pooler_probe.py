"""Whether ``database_url`` is a transaction pooler that ``database.pooler`` does not name.

Behind PgBouncer in ``pool_mode = transaction`` with ``database.pooler: none`` asyncpg's
prepared statements vanish between transactions (SQLSTATE 26000) or clash with another
client's (42P05), and the worker's LISTEN is lost: work is stored and then left claimed
(README, "PgBouncer"). The sign looked for here is certain when seen: a PostgreSQL backend
serves one client connection only, for as long as it is open, directly or through a session
pooler; two open client connections answered by the same backend, or one answered by two, are
a transaction pooler's doing. Not seeing it proves nothing (the pooler may have had other server
connections to hand out): the errors then name the fix when they come (errors.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from receiver.store.errors import POOLER_FIX, pooler_statement_error
from receiver.store.pool_capacity import ANSWER_TIMEOUT_S, BACKEND, made_up_key

__all__ = ["PROBE_ROUNDS", "PoolerNotNamed", "probe_dsn", "probe_pooler"]

# Rounds of the probe: each three statements on two connections, the first connection's, the
# second's, the first's again. PgBouncer hands out the server connection released last (LIFO)
# first, so an idle pooler shows itself in the first round; the others are for a pooler that
# other clients keep busy. With ``server_round_robin = 1`` it hands out the one released first
# (FIFO): with two server connections, two clients taking turns would get one each, the same
# one every time, and the first's third statement breaks that step. Three rounds: eleven round
# trips at start (the first use of each connection's statement prepares it, a round trip of
# its own).
PROBE_ROUNDS = 3


class PoolerNotNamed(Exception):
    """``database_url`` is a transaction pooler but ``database.pooler`` is ``none``: the
    message names the settings to change."""


async def probe_pooler(pool: Any) -> None:
    """Raise PoolerNotNamed when two of ``pool``'s connections (an asyncpg pool with the
    statement cache on) show a transaction pooler's sign; return otherwise. Connection failures
    propagate as asyncpg raises them (the caller translates them)."""
    async with pool.acquire() as first, pool.acquire() as second:
        seen: dict[str, set[int]] = {"first": set(), "second": set()}
        for _ in range(PROBE_ROUNDS):
            try:
                # Each ends its implicit transaction, which a transaction pooler takes as the
                # moment to put the server connection back; the second takes it next (LIFO).
                seen["first"].add(await first.fetchval(BACKEND))
                seen["second"].add(await second.fetchval(BACKEND))
                seen["first"].add(await first.fetchval(BACKEND))
            except asyncpg.PostgresError as exc:
                # The cached statement of a round before met another server connection.
                if pooler_statement_error(exc):
                    raise PoolerNotNamed(_message("a prepared statement vanished")) from None
                raise
            if seen["first"] & seen["second"]:
                raise PoolerNotNamed(
                    _message("two connections were served by one PostgreSQL backend")
                )
            if len(seen["first"]) > 1 or len(seen["second"]) > 1:
                raise PoolerNotNamed(
                    _message("one connection was served by two PostgreSQL backends")
                )


async def probe_dsn(
    dsn: str, *, connect_timeout_s: float, answer_timeout_s: float = ANSWER_TIMEOUT_S
) -> None:
    """``probe_pooler`` for a command that keeps no pool of two (``remediator migrate``, the
    audit commands): raise PoolerNotNamed as it does; return otherwise, every connection
    closed. Connection failures propagate as asyncpg raises them.

    Its eleven round trips and second connection are spent only behind a pooler: one
    connection first, asked for its backend (one round trip), shows a pooler when the process
    id of the cancel key it was given is not that backend's (pool_capacity.py says why);
    PostgreSQL itself, the usual case, costs nothing more. That connection's statement is
    unnamed (no statement cache), so it leaves nothing behind on a pooler's server
    connection for the probe's own statements to meet.

    A probe not done within ``answer_timeout_s`` seconds returns as one that saw nothing: its
    second connection is waiting for a server connection, which a session pooler whose pool
    is used up but for one (PgBouncer ``default_pool_size = 1``) never gives it; the command,
    which needs one connection, worked there without a probe; waiting on the probe, it failed
    after PgBouncer's ``query_wait_timeout`` (120 s by default)."""
    first = await asyncpg.connect(dsn, timeout=connect_timeout_s, statement_cache_size=0)
    try:
        pooler = made_up_key(first, await first.fetchval(BACKEND))
    finally:
        await first.close()
    if not pooler:
        return
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2, timeout=connect_timeout_s)
    probe = asyncio.ensure_future(probe_pooler(pool))
    try:
        done, _ = await asyncio.wait({probe}, timeout=answer_timeout_s)
    finally:
        # Aborted, not closed politely nor cancelled (pool_capacity.py: a statement still
        # waiting for a server connection would wait as long to be closed or cancelled).
        pool.terminate()
        # What the aborted statement raised, taken so that asyncio does not report it.
        await asyncio.gather(probe, return_exceptions=True)
    if done:
        probe.result()


def _message(sign: str) -> str:
    return f"{sign} (database.pooler is none): {POOLER_FIX}"
