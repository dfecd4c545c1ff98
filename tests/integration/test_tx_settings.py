"""A transaction begun together with its SET LOCAL settings (``Database._tx_set``, the claim's
pinned plan): the settings hold inside it and end with it, and it commits or rolls back whole."""

from __future__ import annotations

import pytest

from receiver.store import Store
from receiver.store.claims import CLAIM_PLAN_SETTINGS

pytestmark = pytest.mark.postgres


class _Boom(Exception):
    pass


async def test_the_settings_hold_inside_and_end_with_the_transaction(store: Store) -> None:
    async with store._tx_set(CLAIM_PLAN_SETTINGS) as conn:
        assert await conn.fetchval("SHOW enable_bitmapscan") == "off"
        assert await conn.fetchval("SHOW enable_seqscan") == "off"
        assert conn.is_in_transaction()
        pid = await conn.fetchval("SELECT pg_backend_pid()")
    async with store._pool.acquire() as conn:
        # The pool's only idle connection may be that one: SET LOCAL left nothing behind.
        assert await conn.fetchval("SHOW enable_bitmapscan") == "on"
        assert not conn.is_in_transaction()
    assert pid


async def test_it_commits_at_the_end_and_rolls_back_on_an_error(store: Store) -> None:
    await store._pool.execute("CREATE TABLE tx_probe (n int)")
    async with store._tx_set(CLAIM_PLAN_SETTINGS) as conn:
        await conn.execute("INSERT INTO tx_probe VALUES (1)")

    async def fail_after_an_insert() -> None:
        async with store._tx_set(CLAIM_PLAN_SETTINGS) as conn:
            await conn.execute("INSERT INTO tx_probe VALUES (2)")
            raise _Boom

    with pytest.raises(_Boom):
        await fail_after_an_insert()
    assert [r["n"] for r in await store._pool.fetch("SELECT n FROM tx_probe")] == [1]
    async with store._pool.acquire() as conn:
        assert not conn.is_in_transaction()
