"""A real store whose intake writes wait at a gate the test opens: notifications can be held
in intake, in progress, for as long as a test needs (tests/integration/test_intake*.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from receiver.store import HeldConnection, NewEvent, Store

__all__ = ["GatedStore", "gated_store"]


class GatedStore(Store):
    """The real store, whose writes wait until the test opens the gate; ``writing`` holds the
    batches (notifications per write) that reached it."""

    gate: asyncio.Event
    writing: list[int]

    async def insert_event_groups(
        self,
        groups: Sequence[Sequence[NewEvent]],
        *,
        timeout_s: float = 5.0,
        held: HeldConnection | None = None,
    ) -> list[tuple[int, int]]:
        self.writing.append(len(groups))
        await self.gate.wait()
        return await super().insert_event_groups(groups, timeout_s=timeout_s, held=held)


def gated_store(store: Store) -> GatedStore:
    gated = GatedStore(store._pool, store.dsn)
    gated.gate = asyncio.Event()
    gated.writing = []
    return gated
