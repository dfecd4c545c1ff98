"""A logger that keeps what it is told, for a test to read: ``Said().lines``."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Said"]


class Said:
    """A logger that keeps what it is told: (level, event, fields), in order. Any method name
    is a level (``warning``, ``info``, ``exception``), as structlog's loggers take them."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, object]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def say(event: str, **fields: object) -> None:
            self.lines.append((level, event, fields))

        return say

    def events(self, event: str) -> list[dict[str, object]]:
        """The fields of each line whose event is ``event``, in order."""
        return [fields for _, said, fields in self.lines if said == event]
