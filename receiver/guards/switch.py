"""The operator's kill switch, with the audit record of each move queued in the same step.

``KillSwitch.pause`` and ``resume`` change the pause key as ``Guards.pause`` and ``resume`` do,
and the same Lua script (``lua/pause.lua``, ``lua/resume.lua``) queues the record of the move in
the audit outbox: a Redis stream under the guards' prefix (``GuardKeys.audit_outbox``; on a
cluster in the guards' one slot). So a pause can never be in force without its record waiting
to be written: not when PostgreSQL is down or frozen, not when the process dies before it has
written it. ``receiver.audit_outbox`` writes the queued records to the audit log, oldest first,
and removes each only after its row committed (``remove``).

An entry holds the record's unique id (``entry``), its kind, when it took effect (the script's
clock, ms), the data the operator gave (JSON) and what the script decided (``until``,
``was_paused``). The outbox is bounded (``OUTBOX_CAP``): when it is full the move still takes
effect, and its record is not queued (``Record.queued`` is False).

Every call raises GuardUnavailable when Redis is out of reach, GuardError when it refuses
(``scripts.redis_call``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis, RedisCluster

from receiver.guards.policy import Arg, GuardKeys, GuardSettings, from_ms, to_ms
from receiver.guards.scripts import Script, redis_call

__all__ = ["OUTBOX_CAP", "UNREADABLE_KIND", "KillSwitch", "Record", "Switched", "record_of"]

# The most records the outbox holds: at about 1 KB each (a reason is at most 1000 characters),
# a megabyte of Redis, and weeks of pauses, at the rate operators pause.
OUTBOX_CAP = 1000

# What an entry that cannot be read (written by another version, or by hand) is recorded as:
# its fields as they are, so nothing queued is lost and nothing blocks the entries behind it.
UNREADABLE_KIND = "guards.outbox_unreadable"

# Each call's bound: the guards' own.
_TIMEOUT_S = GuardSettings().timeout_s


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class Record:
    """One pause or resume as the audit log is to hold it. ``entry``: its unique id (also in
    ``data``); ``kind``: ``guards.pause`` or ``guards.resume``; ``at``: when it took effect;
    ``data``: the row's data (a pause: reason, until, via, by; a resume: via, by, was_paused);
    ``stream_id``: where it waits in the outbox, None when it was not queued (the outbox was
    full)."""

    entry: str
    kind: str
    at: datetime
    data: dict[str, Any]
    stream_id: str | None

    @property
    def queued(self) -> bool:
        """Whether the record waits in the outbox to be written."""
        return self.stream_id is not None


@dataclass(frozen=True, slots=True)
class Switched:
    """What a pause or resume did: whether automation is ``paused`` now, until when (a pause;
    None: until resumed), whether there was a pause to lift (a resume), and its ``record``."""

    paused: bool
    record: Record
    until: datetime | None = None
    was_paused: bool = False


def _fields(raw: Any) -> dict[str, str]:
    """An entry's fields as text: redis-py parses XRANGE's into a mapping, a script's reply is
    a flat list of field, value, ..."""
    if isinstance(raw, Mapping):
        return {_text(k): _text(v) for k, v in raw.items()}
    items = [_text(v) for v in raw]
    return dict(zip(items[::2], items[1::2], strict=True))


def record_of(stream_id: str | None, fields: Mapping[str, str]) -> Record:
    """The record an outbox entry holds. An entry that cannot be read is recorded as
    ``UNREADABLE_KIND`` with its fields as they are (never dropped, never in the way)."""
    try:
        data = json.loads(fields["data"])
        if not isinstance(data, dict):
            raise ValueError("the data is not an object")
        kind = fields["kind"]
        if kind == "guards.pause":
            until = fields["until"]
            data["until"] = from_ms(int(until)).isoformat() if until else None
        elif kind == "guards.resume":
            data["was_paused"] = fields["was_paused"] == "1"
        else:
            raise ValueError(f"unknown kind {kind!r}")
        entry = fields["entry"]
        return Record(entry, kind, from_ms(int(fields["at"])), data, stream_id)
    except (KeyError, ValueError, TypeError):
        entry = fields.get("entry") or f"outbox:{stream_id}"
        at = from_ms(int(stream_id.split("-", 1)[0]) if stream_id else 0)
        data = {"entry": entry, "fields": dict(fields)}
        return Record(entry, UNREADABLE_KIND, at, data, stream_id)


class KillSwitch:
    """The pause over ``redis`` (the guards' client) and its audit outbox, under ``keys``.
    ``timeout_s`` bounds each call; ``cap`` is the outbox's size (``OUTBOX_CAP``)."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        keys: GuardKeys,
        *,
        timeout_s: float = _TIMEOUT_S,
        cap: int = OUTBOX_CAP,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._timeout_s = timeout_s
        self._cap = cap
        self._pause = Script(redis, "pause")
        self._resume = Script(redis, "resume")
        self._due = Script(redis, "outbox_due")

    @property
    def outbox_key(self) -> str:
        return self._keys.audit_outbox()

    async def pause(self, seconds: float | None, reason: str, *, by: str, via: str) -> Switched:
        """Refuse every admission for ``seconds`` (None: until resumed), by ``by`` (shown by
        status), through ``via`` ("api"); its record queued in the same step."""
        entry = uuid.uuid4().hex
        data = json.dumps({"reason": reason, "via": via, "by": by, "entry": entry})
        duration: Arg = "" if seconds is None else to_ms(seconds)
        keys = [self._keys.pause(), self.outbox_key]
        args: list[Arg] = [reason, duration, "", by, entry, self._cap, data]
        until_ms, queued, now = await redis_call(
            "pause", self._timeout_s, lambda: self._pause(keys, args)
        )
        until = int(until_ms)
        fields = {"entry": entry, "kind": "guards.pause", "at": _text(now), "data": data}
        fields["until"] = str(until) if until >= 0 else ""
        record = record_of(_text(queued) or None, fields)
        return Switched(True, record, from_ms(until) if until >= 0 else None)

    async def resume(self, *, by: str, via: str) -> Switched:
        """Lift the pause, by ``by`` through ``via``; its record queued in the same step.
        ``was_paused`` says whether there was a pause to lift."""
        entry = uuid.uuid4().hex
        data = json.dumps({"via": via, "by": by, "entry": entry})
        keys = [self._keys.pause(), self.outbox_key]
        gone, queued, now = await redis_call(
            "resume", self._timeout_s, lambda: self._resume(keys, [entry, self._cap, data])
        )
        fields = {"entry": entry, "kind": "guards.resume", "at": _text(now), "data": data}
        fields["was_paused"] = str(int(gone))
        record = record_of(_text(queued) or None, fields)
        return Switched(False, record, was_paused=int(gone) == 1)

    async def due(self, *, min_age_s: float, limit: int) -> list[Record]:
        """The outbox's records queued at least ``min_age_s`` seconds ago (by Redis' clock),
        oldest first, at most ``limit``."""
        reply = await redis_call(
            "outbox",
            self._timeout_s,
            lambda: self._due([self.outbox_key], [to_ms(min_age_s), limit]),
        )
        return _records(reply)

    async def through(self, stream_id: str, *, limit: int) -> list[Record]:
        """The outbox's records from the oldest to the one at ``stream_id``, at most
        ``limit``."""
        reply = await redis_call(
            "outbox",
            self._timeout_s,
            lambda: self._redis.xrange(self.outbox_key, "-", stream_id, count=limit),
        )
        return _records(reply)

    async def remove(self, stream_ids: Sequence[str]) -> int:
        """Take these entries out of the outbox (their rows committed); how many were there."""
        if not stream_ids:
            return 0
        removed = await redis_call(
            "outbox", self._timeout_s, lambda: self._redis.xdel(self.outbox_key, *stream_ids)
        )
        return int(removed)

    async def depth(self) -> int:
        """How many records wait in the outbox."""
        return int(
            await redis_call("outbox", self._timeout_s, lambda: self._redis.xlen(self.outbox_key))
        )


def _records(reply: Any) -> list[Record]:
    """The records of an XRANGE reply (entries without fields, which Redis may list for a
    deleted one, are none)."""
    return [record_of(_text(sid), _fields(raw)) for sid, raw in reply or () if raw]
