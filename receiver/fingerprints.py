"""Alertmanager's alert fingerprint, for alerts the service builds itself (rule tests, the
bench, test payloads): an alert Alertmanager sent keeps the fingerprint it came with. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["fingerprint"]


_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_MASK64 = 0xFFFFFFFFFFFFFFFF
_SEPARATOR = 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's alert fingerprint: prometheus/common ``labelSetToFingerprint``.

    FNV-1a 64 over the UTF-8 bytes of each label name and value in name order, each followed by
    the byte 0xFF (never valid UTF-8, so {"a": "bc"} and {"ab": "c"} differ), as ``%016x``.
    """
    digest = _FNV64_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode("utf-8"):
                digest = ((digest ^ byte) * _FNV64_PRIME) & _MASK64
            digest = ((digest ^ _SEPARATOR) * _FNV64_PRIME) & _MASK64
    return f"{digest:016x}"
