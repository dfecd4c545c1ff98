"""The Redis side of the guards: one Lua script admits a run atomically, across replicas.

All guards (``policy.GUARDS``) are checked and committed by ONE Lua script (``lua/admit.lua``),
so an admission is atomic across every replica, uses the Redis server's clock only, and a
refusal has no side effect (it consumes no cooldown, rate slot, budget or lock).

``Guards(clock=...)`` replaces that clock: every script is given the time in milliseconds, and
decides every expiry (cooldown, lock, breaker, pause, windows) from the until-times it stores
against it, so a rule test (``remediator test``) that jumps its simulated clock forward by hours
sees them expire. Key TTLs are a margin longer and only collect the garbage.

The client is a ``Redis`` (one server, or the master a Sentinel names) or a ``RedisCluster``: on a
cluster every key shares the prefix's hash tag, so each script runs in one slot (``policy``,
``CLUSTER_KEY_PREFIX``: why one tag for all).

Fail closed: a Redis outage (a refused or lost connection, a timeout, a server that is loading,
read-only, out of memory or busy, a cluster slot with no master) raises ``GuardUnavailable``;
the caller then leaves the run pending and retries it later. An error the server answers the
script itself with (a Lua error: a value it cannot take) raises ``GuardError`` instead: asking
again would fail again, so the work fails and counts toward its dead letter rather than waiting
for ever.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import datetime
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster

from receiver.guards.digest_windows import DigestWindows
from receiver.guards.policy import (
    GUARDS,
    Admission,
    AdmissionRequest,
    Arg,
    Guard,
    GuardKeys,
    GuardSettings,
    Refusal,
    admit_call,
    epoch_ms,
    from_ms,
    lock_token,
    to_ms,
)
from receiver.guards.scripts import BatchedScript, Script, redis_call
from receiver.guards.switch_calls import pause_call, resume_call
from receiver.model import NamespacePolicy

__all__ = ["Guards"]

_T = TypeVar("_T")

# Asked with the pause before each step after a run's first (``Guards.between_steps``): whether
# the target lock still holds the token the run's admission wrote (lua/admit.lua,
# ``checks.held``). Not one of GUARDS: it only reads, and admits nobody.
_HELD = Guard("held", keys=lambda c: [c.keys.lock(c.req.target)], args=lambda c: [c.lock_token])
# How long the readiness probe's key outlives the last probe (``Guards.probe``), milliseconds.
_READY_TTL_MS = 60_000
# The name a lost lock is refused under, as the run records it (``policy.REFUSAL_NAMES``).
_LOCK = "lock"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _refusal(guard: str, reply: Sequence[Any]) -> Refusal:
    """admit.lua's refusal ``{0, guard, reason, retry_at_ms (-1: none), now_ms}`` as a Refusal
    by ``guard``. Its wait is retry_at less now, both the script's clock: the service's clock
    may disagree with Redis's, and measured on it, a Redis an hour behind made every wait for
    a lock with less than an hour left 0.1 s, its run asking again ten times a second."""
    retry_ms, now_ms = int(reply[3]), int(reply[4])
    return Refusal(
        guard=guard,
        reason=_text(reply[2]),
        retry_at=from_ms(retry_ms) if retry_ms >= 0 else None,
        retry_in_s=max(0, retry_ms - now_ms) / 1000 if retry_ms >= 0 else None,
    )


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class Guards:
    """The guards over one Redis client. ``clock`` (an aware datetime each call) replaces the
    Redis server's TIME in every decision; the service passes none. Raises ValueError for a
    ``RedisCluster`` when the settings' key prefix has no hash tag (``CLUSTER_KEY_PREFIX``)."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        policy: NamespacePolicy,
        settings: GuardSettings | None = None,
        *,
        guards: Sequence[Guard] = GUARDS,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._redis = redis
        self._clock = clock
        self._policy = policy
        self._settings = settings or GuardSettings()
        self._guards = tuple(guards)
        self._keys = GuardKeys(self._settings.key_prefix)
        if isinstance(redis, RedisCluster):
            self._keys.require_one_slot()
        # A storm's events reach admission together: one pipeline (BatchedScript).
        self._admit = BatchedScript(
            redis, "admit", what="admission", timeout_s=self._settings.timeout_s
        )
        self._release = Script(redis, "release")
        self._release_run = Script(redis, "release_run")
        self._record_failure = Script(redis, "record_failure")
        self._pause = Script(redis, "pause")
        self._resume = Script(redis, "resume")
        self._status_head = Script(redis, "status")
        # Refusal digests' windows: the same Redis, key prefix, clock and errors.
        self.digests = DigestWindows(
            redis,
            self._keys,
            call=self._call,
            now_ms=self._now_ms,
            timeout_s=self._settings.timeout_s,
        )

    @property
    def settings(self) -> GuardSettings:
        return self._settings

    @property
    def redis(self) -> Redis | RedisCluster:
        """The client the guards' keys live behind (the kill switch's outbox shares it)."""
        return self._redis

    @property
    def keys(self) -> GuardKeys:
        return self._keys

    def _now_ms(self) -> int | None:
        """The injected clock in ms since the epoch; None: the scripts read the server's TIME."""
        return None if self._clock is None else epoch_ms(self._clock())

    def _issued_ms(self) -> int:
        """When a lock token is issued: the injected clock, else this host's wall clock (only
        ever compared with the issue times of the same run's other tokens)."""
        now_ms = self._now_ms()
        return time.time_ns() // 1_000_000 if now_ms is None else now_ms

    async def _call(self, what: str, make: Callable[[], Awaitable[_T]]) -> _T:
        return await redis_call(what, self._settings.timeout_s, make)

    async def admit(
        self, req: AdmissionRequest, *, only: Collection[str] | None = None
    ) -> Admission:
        """Check every guard in order; admit (and commit them all) or refuse with no effect.

        ``only``: check just the guards of these names, in their declared order (the resolve
        path asks pause, namespace and lock). Idempotent per ``req.run_id``: the run's own
        cooldown, rate and budget entries and its own lock do not refuse it again; a repeated
        admission gets a new token and fence."""
        # The run id in the token names the holder in refusals and makes the lock re-entrant
        # for the same run; the random part makes the token unguessable and unique. The issue
        # time lets the script tell this admission, should it land after a retry of the run,
        # from that retry (lua/admit.lua: a late admission is refused, and changes nothing).
        token = lock_token(req.run_id, self._issued_ms(), secrets.token_hex(16))
        guards = self._guards if only is None else [g for g in self._guards if g.name in only]
        keys, argv, checked = admit_call(
            guards,
            req,
            policy=self._policy,
            settings=self._settings,
            lock_token=token,
            now_ms=self._now_ms(),
        )
        reply = await self._call("admit", lambda: self._admit(keys, argv))
        if int(reply[0]) == 1:
            fence = int(reply[2])
            return Admission(
                admitted=True,
                lock_token=_text(reply[1]) or None,
                fence=fence if fence >= 0 else None,
                checked=checked,
                budget_drawn=int(reply[4]) == 1,
            )
        refusal = _refusal(_text(reply[1]), reply)
        return Admission(admitted=False, refusal=refusal, checked=checked)

    async def between_steps(self, req: AdmissionRequest, lock_token: str | None) -> Refusal | None:
        """Whether ``req``'s run may take its next step, in one script (one round trip): the
        pause's refusal, else, when ``lock_token`` is given (the token the run's admission
        took the target lock with), a refusal by the ``lock`` guard when the lock no longer
        holds exactly that token (it expired, was deleted, was lost with a Redis that
        restarted without its data, or another run or admission took it). None: the step may
        run. Commits nothing. Raises GuardUnavailable (the caller runs nothing more now) or
        GuardError, as ``admit``."""
        guards = [g for g in self._guards if g.name == "pause"]
        if lock_token is not None:
            guards.append(_HELD)
        keys, argv, _ = admit_call(
            guards,
            req,
            policy=self._policy,
            settings=self._settings,
            lock_token=lock_token or "",
            now_ms=self._now_ms(),
        )
        reply = await self._call("between_steps", lambda: self._admit(keys, argv))
        if int(reply[0]) == 1:
            return None
        guard = _text(reply[1])
        return _refusal(_LOCK if guard == _HELD.name else guard, reply)

    async def release(self, req: AdmissionRequest, admission: Admission) -> bool:
        """Release the target lock if it still holds this admission's token (never another's,
        even of the same run: a release that lands late must not free a later admission's
        lock). True when it was released. A release leaves the run's release mark, so that an
        admission of the run issued before this one and landing late does not take the lock."""
        if not admission.admitted or admission.lock_token is None:
            return False
        keys = [self._keys.lock(req.target), self._keys.released(req.target, req.run_id)]
        args: list[Arg] = [admission.lock_token, to_ms(self._settings.lock_ttl_s)]
        now_ms = self._now_ms()
        if now_ms is not None:
            args.append(now_ms)
        reply = await self._call("release", lambda: self._release(keys, args))
        return int(reply) == 1

    async def release_run(self, req: AdmissionRequest) -> bool:
        """Release the target lock if run ``req.run_id`` holds it, whatever the token: True
        when it did. Only for a pass that has just ended a run the store never recorded as
        admitted (``pipeline.overtaken.release_admitted_lock``): an admission of it that
        Redis took and whose worker died before recording it holds the lock under the run's
        id, with a token nobody knows. No follow-up of such a run is ever admitted under its
        id, and an admission of it still in flight records nothing once the run has ended.
        Raises GuardUnavailable or GuardError, as ``admit``."""
        keys = [self._keys.lock(req.target)]
        reply = await self._call("release_run", lambda: self._release_run(keys, [req.run_id]))
        return int(reply) == 1

    async def refund_budget(self, run_id: str) -> bool:
        """Take ``run_id`` out of the global budget's window (its disruptive step never ran):
        whether it held a slot there. Raises GuardUnavailable as every call here does."""
        key = self._keys.budget()
        removed = await self._call("refund_budget", lambda: self._redis.zrem(key, run_id))
        return int(removed) == 1

    async def record_result(
        self, rule: str, success: bool, *, failure_id: str | None = None
    ) -> datetime | None:
        """Feed the rule's circuit breaker. Returns until when it is open, None if closed.

        Only failures are recorded; a success does not erase them. ``failure_id`` names the
        failure, so recording it again (a retried job) counts it once; None: a new one."""
        if success:
            return None
        s = self._settings
        keys = [self._keys.failures(rule), self._keys.breaker(rule)]
        args: list[Arg] = [
            failure_id or secrets.token_hex(8),
            s.breaker_failures,
            to_ms(s.breaker_window_s),
            to_ms(s.breaker_open_for_s),
        ]
        now_ms = self._now_ms()
        if now_ms is not None:
            args.append(now_ms)
        reply = await self._call("record_result", lambda: self._record_failure(keys, args))
        until = int(reply)
        return from_ms(until) if until >= 0 else None

    async def pause(self, seconds: float | None, reason: str, *, by: str = "") -> datetime | None:
        """Refuse every admission until `seconds` pass (None: until resume()); ``by``: who
        paused (an operator's name), which ``status`` shows. Returns the end. Nothing is
        queued in the audit outbox: the routes' pause is ``KillSwitch.pause``."""
        keys, args = pause_call(self._keys, seconds, reason, by=by, now_ms=self._now_ms())
        reply = await self._call("pause", lambda: self._pause(keys, args))
        until = int(reply[0])
        return from_ms(until) if until >= 0 else None

    async def resume(self) -> bool:
        """Lift the pause; whether there was one. Nothing is queued, as ``pause``."""
        keys, args = resume_call(self._keys)
        reply = await self._call("resume", lambda: self._resume(keys, args))
        return int(reply[0]) == 1

    async def probe(self) -> None:
        """Raises GuardUnavailable unless the Redis holding the guards' keys takes a write now,
        for /readyz and ``remediator_component_up``. A write, not a PING: a master refusing
        writes (``NOREPLICAS`` under ``min-replicas-to-write`` with its replicas gone,
        ``READONLY``, ``OOM``, ``MISCONF``) still answers a PING while every admission fails.
        One SET of a fixed key with a short TTL: one key however often it is probed, on the
        guards' slot in a cluster, gone a minute after the last probe."""
        await self._call("readiness probe", self._probe)

    async def _probe(self) -> None:
        await self._redis.set(self._keys.ready(), "1", px=_READY_TTL_MS)

    async def status(self) -> dict[str, Any]:
        """Pause, breakers and budget as plain data, for the CLI and /readyz."""
        return await self._call("status", self._status)

    async def _status(self) -> dict[str, Any]:
        s, r = self._settings, self._redis
        seconds, micros, fields = await self._status_head([self._keys.pause()], [])
        now_ms = self._now_ms() or int(seconds) * 1000 + int(micros) // 1000
        pause = {_text(k): _text(v) for k, v in zip(fields[::2], fields[1::2], strict=True)}
        # A field edited by hand to what is not a time reads as none: the pause holds, as the
        # admissions hold it (admit.lua), and the status still answers.
        paused_until, since = _ms(pause.get("until")), _ms(pause.get("since"))
        if paused_until is not None and paused_until <= now_ms:
            pause = {}  # ended; its key waits for its TTL
        used = await r.zcount(self._keys.budget(), f"({now_ms - to_ms(s.budget_window_s)}", "+inf")

        breakers: dict[str, dict[str, Any]] = {}
        scan_on: dict[str, Any] = {}
        if isinstance(r, RedisCluster):
            # Every guard key is in one slot: scan its master, not every node of the cluster
            # (whose other masters may be down while the guards work).
            scan_on["target_nodes"] = r.get_node_from_key(self._keys.pause())
        failures_prefix = self._keys.failures("")
        open_prefix = self._keys.breaker("")
        for prefix in (failures_prefix, open_prefix):
            async for raw in r.scan_iter(match=_glob_escape(prefix) + "*", count=500, **scan_on):
                rule = _text(raw)[len(prefix) :]
                breakers.setdefault(rule, {"open": False, "open_until": None, "failures": 0})
        for rule, state in breakers.items():
            state["failures"] = await r.zcount(
                self._keys.failures(rule), f"({now_ms - to_ms(s.breaker_window_s)}", "+inf"
            )
            opened = await r.get(self._keys.breaker(rule))
            if opened is not None and ((until := _ms(_text(opened))) is None or until > now_ms):
                state["open"] = True  # one that is not a time holds it open, as admit.lua does
                state["open_until"] = None if until is None else from_ms(until).isoformat()

        return {
            "now": from_ms(now_ms).isoformat(),
            "paused": bool(pause),
            "pause": {
                "reason": pause.get("reason", ""),
                "since": None if since is None else from_ms(since).isoformat(),
                "until": None if paused_until is None else from_ms(paused_until).isoformat(),
                "by": pause.get("by") or None,
            }
            if pause
            else None,
            "budget": {
                "used": int(used),
                "limit": s.budget_count,
                "window_s": s.budget_window_s,
            },
            "breakers": breakers,
        }


def _ms(text: str | None) -> int | None:
    """A stored time (ms since the epoch, as the scripts write it), None when absent or not a
    whole number (a key edited by hand)."""
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return None
