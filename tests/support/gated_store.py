"""A real store whose intake writes wait at a gate the test opens: notifications can be held
in intake, in progress, for as long as a test needs (tests/integration/test_intake*.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from receiver.store import HeldConnection, NewEvent, Store

__all__ = ["GatedStore", "gated_store"]


class GatedStore(Store):
    """The real store, whose writes wait until the test opens the gate; ``writing`` holds the
    batches (notifications per write) that reached it, and ``observed`` what ``observe``
    returned as each reached it (when set)."""

    gate: asyncio.Event
    writing: list[int]
    observe: Callable[[], object] | None
    observed: list[object]

    async def insert_event_groups(
        self,
        groups: Sequence[Sequence[NewEvent]],
        *,
        timeout_s: float = 5.0,
        held: HeldConnection | None = None,
    ) -> list[tuple[int, int]]:
        self.writing.append(len(groups))
        if self.observe is not None:
            self.observed.append(self.observe())
        await self.gate.wait()
        return await super().insert_event_groups(groups, timeout_s=timeout_s, held=held)


def gated_store(store: Store) -> GatedStore:
    gated = GatedStore(store._pool, store.dsn)
    gated.gate = asyncio.Event()
    gated.writing = []
    gated.observe = None
    gated.observed = []
    return gated
