"""How hard one call to a remote system is tried: the policy every action family shares. Pure.

Each family decides what is transient (a broken connection, 429, 5xx, a PostgreSQL that is
starting up) and maps what is left to the action errors; the policy only says how many tries,
how long to wait between them, and how long one try may take.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_RETRY", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one call is tried. Passed to each action's constructor; never global."""

    attempts: int = 4  # total tries, the first included
    initial_wait: float = 0.2  # seconds before the second try; doubles each time
    max_wait: float = 2.0  # ceiling of a single wait
    jitter: float = 0.1  # random seconds added to each wait, so replicas do not retry in step
    request_timeout: float = 10.0  # seconds for one request, connect to last byte

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if min(self.initial_wait, self.max_wait, self.jitter, self.request_timeout) < 0:
            raise ValueError("waits and timeouts must not be negative")


DEFAULT_RETRY = RetryPolicy()
