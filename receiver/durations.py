"""Durations as rule files write them: ``30s``, ``15m``, ``1h30m``, ``2d``.

The one home of the syntax is ``remediations.durations`` (actions' params take durations too,
and ``remediations`` never imports ``receiver``); this module keeps the receiver's import path.
"""

from __future__ import annotations

from remediations.durations import MAX_DURATION_S, format_duration, parse_duration

__all__ = ["MAX_DURATION_S", "format_duration", "parse_duration"]
