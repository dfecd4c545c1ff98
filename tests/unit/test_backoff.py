"""The worker's retry backoff: doubling from the base, capped, jittered to 0.5..1x."""

from __future__ import annotations

import pytest

from receiver.worker.attempt import Backoff


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [
        (0, 0.5, 1.0),
        (1, 0.5, 1.0),
        (2, 1.0, 2.0),
        (5, 8.0, 16.0),
        (9, 128.0, 256.0),
        (40, 150, 300),
    ],
)
def test_doubles_per_attempt_up_to_the_cap(attempt: int, low: float, high: float) -> None:
    backoff = Backoff(base_s=1.0, max_s=300.0)
    delays = [backoff(attempt) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    assert max(delays) - min(delays) > 0  # jittered: replicas do not retry in step


def test_a_cap_given_per_call_wins() -> None:
    assert all(Backoff(1.0, 300.0)(30, cap=5.0) <= 5.0 for _ in range(100))
