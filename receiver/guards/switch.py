"""The operator's kill switch, with the audit record of each move queued in the same step.

``KillSwitch.pause`` and ``resume`` change the pause key as ``Guards.pause`` and ``resume`` do,
through the same scripts and arguments (``switch_calls``), and the same Lua script
(``lua/pause.lua``, ``lua/resume.lua``) queues the record of the move in
the audit outbox: a Redis stream under the guards' prefix (``GuardKeys.audit_outbox``; on a
cluster in the guards' one slot). So a pause can never be in force without its record waiting
to be written: not when PostgreSQL is down or frozen, not when the process dies before it has
written it. ``receiver.audit_outbox`` writes the queued records to the audit log, oldest first,
and removes each only after its row committed (``remove``).

An entry holds the record's unique id (``entry``), its kind, when it took effect (the script's
clock, ms), the data the operator gave (JSON) and what the script decided (``until``,
``was_paused``). An entry written otherwise (by hand, another program) is never in the way:
whatever its bytes, it is recorded as ``UNREADABLE_KIND`` with its fields as text the audit log
can hold (``record_of``). The outbox is bounded (``OUTBOX_CAP``): when it is full the move still
takes effect, and its record is not queued (``Record.queued`` is False).

Every call raises GuardUnavailable when Redis is out of reach, GuardError when it refuses
(``scripts.redis_call``).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from redis.asyncio import Redis, RedisCluster

from receiver.guards.policy import GuardKeys, GuardSettings, from_ms
from receiver.guards.scripts import Script, redis_call
from receiver.guards.switch_calls import Queued, pause_call, resume_call

__all__ = [
    "OUTBOX_CAP",
    "UNREADABLE_KIND",
    "Backlog",
    "KillSwitch",
    "Record",
    "Switched",
    "record_of",
]

# The most records the outbox holds: at about 1 KB each (a reason is at most 1000 characters),
# a megabyte of Redis, and weeks of pauses, at the rate operators pause.
OUTBOX_CAP = 1000

# What an entry that cannot be read (written by another version, or by hand) is recorded as:
# its fields as they are, so nothing queued is lost and nothing blocks the entries behind it.
UNREADABLE_KIND = "guards.outbox_unreadable"

# Each call's bound: the guards' own.
_TIMEOUT_S = GuardSettings().timeout_s


# U+0000 in JSON text (an escape not itself escaped): PostgreSQL's text and jsonb cannot hold it.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _text(value: Any) -> str:
    """A value of the script's own reply as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _storable(value: Any) -> tuple[str, bool]:
    """``value`` (an entry's field name or value, bytes from Redis) as text the audit log can
    hold, and whether that is the value as it is. Bytes that are not UTF-8 keep their text,
    each undecodable byte written ``\\xNN`` (Python's ``backslashreplace``); U+0000 is written
    ``\\x00`` (PostgreSQL's text cannot hold it)."""
    if isinstance(value, bytes):
        try:
            text, intact = value.decode(), True
        except UnicodeDecodeError:
            text, intact = value.decode("utf-8", "backslashreplace"), False
    else:
        text, intact = str(value), True
    if "\x00" in text:
        text, intact = text.replace("\x00", "\\x00"), False
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate: only a str, never decoded bytes, has one
        text, intact = text.encode("utf-8", "backslashreplace").decode(), False
    return text, intact


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
class Backlog:
    """What waits in the outbox as one read saw it: how many ``records``, and how long the
    oldest has (``oldest_age_s``, seconds by Redis' clock since it was queued; 0 when none
    waits)."""

    records: int
    oldest_age_s: float


@dataclass(frozen=True, slots=True)
class Switched:
    """What a pause or resume did: whether automation is ``paused`` now, until when (a pause;
    None: until resumed), whether there was a pause to lift (a resume), and its ``record``."""

    paused: bool
    record: Record
    until: datetime | None = None
    was_paused: bool = False


def _fields(raw: Any) -> tuple[dict[str, str], list[str]]:
    """An entry's fields as text the audit log can hold (``_storable``), and the names of
    those that had to be escaped: redis-py parses XRANGE's into a mapping, a script's reply is
    a flat list of field, value, ... An odd list (never written by the scripts) is read with
    an empty last value."""
    if isinstance(raw, Mapping):
        pairs: Any = raw.items()
    else:
        items = list(raw)
        pairs = itertools.zip_longest(items[::2], items[1::2], fillvalue=b"")
    fields: dict[str, str] = {}
    escaped: list[str] = []
    for key, value in pairs:
        (name, name_intact), (text, text_intact) = _storable(key), _storable(value)
        fields[name] = text
        if not (name_intact and text_intact):
            escaped.append(name)
    return fields, escaped


def record_of(
    stream_id: str | None, fields: Mapping[str, str], escaped: Sequence[str] = ()
) -> Record:
    """The record an outbox entry holds (``fields``, text). An entry that cannot be read, or
    one the audit log could not hold as it is, is recorded as ``UNREADABLE_KIND`` with its
    fields as they are, the ``escaped`` ones (``_storable``) named (never dropped, never in
    the way): its data is ``{"entry", "fields", "escaped"}``."""
    try:
        if escaped:
            raise ValueError("fields that are not text the audit log can hold")
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
        _holdable(data)
        entry = fields["entry"]
        return Record(entry, kind, from_ms(int(fields["at"])), data, stream_id)
    except (KeyError, ValueError, TypeError, OverflowError, OSError):
        entry = fields.get("entry") or f"outbox:{stream_id}"
        data = {"entry": entry, "fields": dict(fields), "escaped": list(escaped)}
        return Record(entry, UNREADABLE_KIND, _queued_at(stream_id), data, stream_id)


def _holdable(data: dict[str, Any]) -> None:
    """Raise ValueError when the audit log (jsonb) cannot hold ``data`` as it is: NaN or an
    infinity, a lone surrogate (no UTF-8), U+0000 (an entry written by hand: the scripts'
    data is written by ``KillSwitch`` from text the routes checked)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    text.encode()  # UnicodeEncodeError, a ValueError: a lone surrogate
    if _NUL.search(text):
        raise ValueError("U+0000, which the audit log cannot hold")


def _queued_at(stream_id: str | None) -> datetime:
    """When an entry was queued, from its stream id (ms), for one that says nothing readable
    itself; the epoch for an id out of datetime's range (set by hand)."""
    try:
        return from_ms(int(stream_id.split("-", 1)[0]) if stream_id else 0)
    except (ValueError, OverflowError, OSError):
        return from_ms(0)


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
        keys, args = pause_call(
            self._keys, seconds, reason, by=by, queued=Queued(entry, self._cap, data)
        )
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
        keys, args = resume_call(self._keys, queued=Queued(entry, self._cap, data))
        gone, queued, now = await redis_call(
            "resume", self._timeout_s, lambda: self._resume(keys, args)
        )
        fields = {"entry": entry, "kind": "guards.resume", "at": _text(now), "data": data}
        fields["was_paused"] = str(int(gone))
        record = record_of(_text(queued) or None, fields)
        return Switched(False, record, was_paused=int(gone) == 1)

    async def due(self, *, min_age_s: float, limit: int) -> tuple[list[Record], Backlog]:
        """The outbox's records queued at least ``min_age_s`` seconds ago (by Redis' clock),
        oldest first, at most ``limit``; 0: every one, queued this very millisecond too. And,
        read in the same call, what waits in the outbox (``Backlog``)."""
        # Not to_ms: it makes 0 a millisecond, which left out a record queued within it.
        age_ms = max(0, math.ceil(min_age_s * 1000))
        now, depth, oldest, reply = await redis_call(
            "outbox",
            self._timeout_s,
            lambda: self._due([self.outbox_key], [age_ms, limit]),
        )
        return _records(reply), _backlog(int(now), int(depth), _text(oldest))

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


def _backlog(now_ms: int, depth: int, oldest: str) -> Backlog:
    """What waits in the outbox at ``now_ms`` (Redis' clock): ``depth`` records, the oldest at
    stream id ``oldest`` ('' when none), queued at its id's milliseconds (an id is always
    ``<ms>-<seq>``; one set by hand says when it claims to have been queued)."""
    if depth == 0 or not oldest:
        return Backlog(depth, 0.0)
    return Backlog(depth, max(0, now_ms - int(oldest.split("-", 1)[0])) / 1000)


def _records(reply: Any) -> list[Record]:
    """The records of an XRANGE reply (entries without fields, which Redis may list for a
    deleted one, are none)."""
    return [record_of(_text(sid), *_fields(raw)) for sid, raw in reply or () if raw]
