"""What the params models of actions outside Kubernetes share: strictness and durations. Pure.

Params are written in rule files and validated when the rules load; the executor parses them
again from ``model_dump(mode="json")``, so every type here survives that round trip (a duration
dumps as ``"10m"``, never as a bare number a rule file would not accept).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from remediations.durations import MAX_DURATION_S, format_duration, parse_duration

__all__ = ["Duration", "StrictParams"]


class StrictParams(BaseModel):
    """Unknown fields are errors (a typo in a rule must not be ignored); immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _seconds(value: object) -> float:
    seconds = parse_duration(value)
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is longer than {format_duration(MAX_DURATION_S)} (a year)")
    return seconds


# Seconds as a float in Python; ``10m`` in a rule file and in the JSON dump.
Duration = Annotated[
    float,
    BeforeValidator(_seconds),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]
