"""whbreak45: the worker's gap after an intake hold is promised from the hold's END (README
Storms, "Webhooks go first in a flood": "takes the hold again 20 ms after it ends, so the
worker keeps 1/11 of the time"; GAP_S: "After an intake hold ends, the worker's events go on
for at least this long"). In a flood the loop is busy, so the hold's timer runs late; the
next hold must still wait gap_s after the late end, not after hold_s + gap_s from the start."""

from __future__ import annotations

from receiver.priority import IntakeFirst, Priority


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_late_timer_does_not_eat_the_workers_gap() -> None:
    clock = Clock()
    priority = Priority(hold_s=0.2)
    first = IntakeFirst(priority, busy_at=1, gap_s=0.02, clock=clock)
    first.entered()
    # The loop, busy with the flood, runs the hold's timer 50 ms late.
    clock.now += 0.25
    priority.release(IntakeFirst.KEY)
    first.left()
    first.entered()  # the very next webhook of the flood, 0 ms after the hold ended
    try:
        assert (first.holds, priority.holding) == (1, False)
    finally:
        priority.release(IntakeFirst.KEY)
