"""How the ``serve`` process runs Python: its event loop and its garbage collector.

Process-wide settings, applied by the ``serve`` command only (never by the library code that
tests import), so a test process keeps the interpreter's defaults.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

__all__ = ["GEN0_THRESHOLD", "event_loop_factory", "tune_garbage_collector"]

# Allocations of container objects, net of deallocations, between collections of the youngest
# generation (CPython's default is 700). See tune_garbage_collector.
GEN0_THRESHOLD = 20_000


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed: the same asyncio API with less CPU per request, which is what
    bounds intake on a small machine. The standard loop otherwise."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def tune_garbage_collector(threshold0: int = GEN0_THRESHOLD) -> tuple[int, int, int]:
    """Collect the youngest generation every ``threshold0`` net allocations instead of every
    700; the older generations keep their thresholds. Returns the thresholds it replaced.

    Why: a webhook allocates a few hundred container objects (the parsed notification, its
    events, aiohttp's request and response), almost all freed by reference counting when the
    answer is sent. At 700 the cycle collector ran every two or three webhooks, each time
    walking objects that were about to be freed anyway: 10-19 % of the service's CPU per webhook
    on a 2-core machine (`make bench`, intake round, side by side). Cyclic garbage is still
    collected, in fewer and larger passes; at most ``threshold0`` young objects wait for one.
    """
    previous = gc.get_threshold()
    gc.set_threshold(threshold0, previous[1], previous[2])
    return previous
