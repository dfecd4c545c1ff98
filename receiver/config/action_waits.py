"""How long a step waits for a system it cannot reach, as settings (``actions.*``).

``Settings`` inherits this group, as it does ``RedisSettings``; the YAML paths and variables
are in ``sources.KEYS``. The pipeline's use of them: receiver/pipeline/unreachable.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

from pydantic import BaseModel, ValidationInfo, field_validator

from receiver.config.values import duration, written
from receiver.model import UNDO_UNREACHABLE_RETRY_S, UNREACHABLE_RETRY_S

if TYPE_CHECKING:
    from receiver.config.settings import Settings

__all__ = ["ActionWaits", "PipelineWaits", "pipeline_waits"]

# At most a day: a run's retried event holds its alert's next events behind it meanwhile.
_DAY = 86400.0


class ActionWaits(BaseModel):
    """``unreachable_retry_seconds``: how long a run's (or an escalation's) step whose system
    cannot be reached, nothing sent, waits for it before it is recorded failed;
    ``undo_unreachable_retry_seconds``: the same for an on_resolved step. ``0s`` (fail at
    once, as before) to ``1d``, written as durations."""

    unreachable_retry_seconds: float = UNREACHABLE_RETRY_S
    undo_unreachable_retry_seconds: float = UNDO_UNREACHABLE_RETRY_S

    @field_validator("unreachable_retry_seconds", "undo_unreachable_retry_seconds", mode="before")
    @classmethod
    def _waits(cls, value: object, info: ValidationInfo) -> float:
        return duration(value, (0.0, _DAY), written=written(info), spelled={_DAY: "1d"})


class PipelineWaits(TypedDict):
    """``PipelineSettings``' keyword arguments of how long the pipeline waits (seconds)."""

    refusal_digest_s: float
    unreachable_retry_s: float
    undo_unreachable_retry_s: float


def pipeline_waits(settings: Settings) -> PipelineWaits:
    """What ``settings`` say of the pipeline's waits: the refusal digest's window, and how long
    a step waits for an unreachable system (a run's, an undo's), in seconds."""
    return PipelineWaits(
        refusal_digest_s=settings.refusal_digest_seconds,
        unreachable_retry_s=settings.unreachable_retry_seconds,
        undo_unreachable_retry_s=settings.undo_unreachable_retry_seconds,
    )
