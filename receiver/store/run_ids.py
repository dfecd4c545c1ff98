"""A run's id, from what makes the run unique. Pure."""

from __future__ import annotations

import hashlib
import uuid

__all__ = ["run_id_of"]

# Namespace of run ids (uuid5): a run's id follows from what makes it unique.
_RUN_IDS = uuid.UUID("6f1d3c2a-8b7e-5c4d-9a1f-2e3b4c5d6e7f")
_RUN_ID_PREFIX = _RUN_IDS.bytes


def run_id_of(rule: str, fingerprint: str, starts_at: str, refire: int) -> str:
    """The id of the run of ``rule`` for one occurrence of an alert (what the runs table's
    ``runs_once_per_occurrence`` makes unique), the same on every attempt: the guards can be
    asked before the run is stored, and a retry after a crash in between asks them again
    under the same id (admission is idempotent per run id, receiver/guards/lua/admit.lua).

    ``uuid.uuid5(_RUN_IDS, name)`` as a string (RFC 4122, section 4.3: the SHA-1 of the
    namespace's bytes and the name's UTF-8, version 5, variant RFC 4122), written out here:
    ``uuid5`` builds a UUID from an integer and formats it back, a visible share of a storm
    event's CPU. Pinned equal to ``uuid5`` by a test."""
    name = "\x1f".join((rule, fingerprint, starts_at, str(refire)))
    digest = bytearray(hashlib.sha1(_RUN_ID_PREFIX + name.encode(), usedforsecurity=False).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # variant RFC 4122
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
