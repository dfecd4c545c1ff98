"""Redis-backed admission: may this run act on this target now?

The guards, in order: global pause -> namespace policy -> per-(rule, target) cooldown ->
per-rule rate -> global budget of disruptive actions -> circuit breaker -> per-target lock.
All of them are checked and committed by ONE Lua script (``lua/admit.lua``), so an admission
is atomic across every replica, uses the Redis server's clock only, and a refusal has no side
effect (it consumes no cooldown, rate slot, budget or lock).

The Python side is a declared list (``GUARDS``): each item names a guard, says when it applies
and which keys and arguments its Lua check receives. Adding a guard is adding an item here and
a ``checks.<name>`` (and, if it writes, ``commits.<name>``) function in ``admit.lua``.

Fail closed: any Redis error, timeout or refused connection raises ``GuardUnavailable``; the
caller then leaves the event pending and retries it later.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from receiver.model import GuardSpec, NamespacePolicy, Target

__all__ = [
    "GUARDS",
    "Admission",
    "AdmissionRequest",
    "Guard",
    "GuardKeys",
    "GuardSettings",
    "GuardUnavailable",
    "Guards",
    "Refusal",
    "admit_arguments",
    "from_ms",
    "load_lua",
    "to_ms",
]

_T = TypeVar("_T")


class GuardUnavailable(Exception):
    """Redis could not be asked. Nothing may run: the caller keeps the event pending."""


@dataclass(frozen=True, slots=True)
class GuardSettings:
    key_prefix: str = "remediator:"
    # Global budget of disruptive actions, all rules together, in a sliding window.
    budget_count: int = 10
    budget_window_s: float = 3600.0
    # Circuit breaker: `breaker_failures` failed runs of a rule within `breaker_window_s`
    # refuse that rule for `breaker_open_for_s`.
    breaker_failures: int = 3
    breaker_window_s: float = 1800.0
    breaker_open_for_s: float = 3600.0
    lock_ttl_s: float = 600.0
    # Upper bound for one round trip to Redis; beyond it the guards are unavailable.
    timeout_s: float = 5.0

    def __post_init__(self) -> None:
        if self.budget_count < 0 or self.breaker_failures < 1:
            raise ValueError("budget_count must be >= 0 and breaker_failures >= 1")
        for name in (
            "budget_window_s",
            "breaker_window_s",
            "breaker_open_for_s",
            "lock_ttl_s",
            "timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    run_id: str
    rule: str
    target: Target
    disruptive: bool
    spec: GuardSpec


@dataclass(frozen=True, slots=True)
class Refusal:
    guard: str
    reason: str
    # When waiting may let the admission pass (Redis clock, UTC); None when waiting will not
    # help (namespace policy, a pause without an end, a rule allowed zero runs).
    retry_at: datetime | None


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    refusal: Refusal | None = None
    lock_token: str | None = None
    # Fencing token: strictly increasing per target, to pass along with every write.
    fence: int | None = None


# --- pure pieces: keys, durations, the declared guard list ---------------------------------


def to_ms(seconds: float) -> int:
    """A positive duration in whole milliseconds, rounded up, never below 1 ms."""
    return max(1, math.ceil(seconds * 1000))


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class GuardKeys:
    """Every Redis key the guards use, under one prefix."""

    prefix: str

    def pause(self) -> str:
        return f"{self.prefix}pause"

    def cooldown(self, rule: str, target: Target) -> str:
        return f"{self.prefix}cooldown:{rule}:{target.key}"

    def rate(self, rule: str) -> str:
        return f"{self.prefix}rate:{rule}"

    def budget(self) -> str:
        return f"{self.prefix}budget"

    def failures(self, rule: str) -> str:
        return f"{self.prefix}breaker:failures:{rule}"

    def breaker(self, rule: str) -> str:
        return f"{self.prefix}breaker:open:{rule}"

    def lock(self, target: Target) -> str:
        return f"{self.prefix}lock:{target.key}"

    def fence(self, target: Target) -> str:
        return f"{self.prefix}fence:{target.key}"


@dataclass(frozen=True, slots=True)
class _Ctx:
    """What a guard item may look at to build its keys and arguments."""

    req: AdmissionRequest
    keys: GuardKeys
    policy: NamespacePolicy
    settings: GuardSettings
    lock_token: str


Arg = str | int


@dataclass(frozen=True, slots=True)
class Guard:
    """One guard as the Lua script sees it: `checks[name](keys, args)` in admit.lua."""

    name: str
    keys: Callable[[_Ctx], Sequence[str]]
    args: Callable[[_Ctx], Sequence[Arg]] = lambda _: ()
    applies: Callable[[_Ctx], bool] = lambda _: True


def _cooldown_applies(c: _Ctx) -> bool:
    return c.req.spec.cooldown_s is not None and c.req.spec.cooldown_s > 0


def _rate_applies(c: _Ctx) -> bool:
    s = c.req.spec
    return s.max_runs is not None and s.max_runs_per_s is not None and s.max_runs_per_s > 0


GUARDS: tuple[Guard, ...] = (
    Guard("pause", keys=lambda c: [c.keys.pause()]),
    Guard(
        "namespace",
        keys=lambda c: [],
        args=lambda c: [
            "1" if c.policy.permits(c.req.target.namespace) else "0",
            c.req.target.namespace,
        ],
    ),
    Guard(
        "cooldown",
        keys=lambda c: [c.keys.cooldown(c.req.rule, c.req.target)],
        args=lambda c: [to_ms(c.req.spec.cooldown_s or 0)],
        applies=_cooldown_applies,
    ),
    Guard(
        "rate",
        keys=lambda c: [c.keys.rate(c.req.rule)],
        args=lambda c: [c.req.spec.max_runs or 0, to_ms(c.req.spec.max_runs_per_s or 0)],
        applies=_rate_applies,
    ),
    Guard(
        "budget",
        keys=lambda c: [c.keys.budget()],
        args=lambda c: [c.settings.budget_count, to_ms(c.settings.budget_window_s)],
        applies=lambda c: c.req.disruptive,
    ),
    Guard("breaker", keys=lambda c: [c.keys.breaker(c.req.rule)]),
    Guard(
        "lock",
        keys=lambda c: [c.keys.lock(c.req.target), c.keys.fence(c.req.target)],
        args=lambda c: [c.lock_token, to_ms(c.settings.lock_ttl_s)],
    ),
)


def admit_arguments(
    guards: Sequence[Guard],
    req: AdmissionRequest,
    *,
    policy: NamespacePolicy,
    settings: GuardSettings,
    lock_token: str,
) -> tuple[list[str], list[Arg]]:
    """KEYS and ARGV for admit.lua: run id, guard count, then (name, #keys, #args, args...)."""
    ctx = _Ctx(req, GuardKeys(settings.key_prefix), policy, settings, lock_token)
    keys: list[str] = []
    argv: list[Arg] = [req.run_id, 0]
    count = 0
    for guard in guards:
        if not guard.applies(ctx):
            continue
        gkeys, gargs = list(guard.keys(ctx)), list(guard.args(ctx))
        keys.extend(gkeys)
        argv.extend([guard.name, len(gkeys), len(gargs), *gargs])
        count += 1
    argv[1] = count
    return keys, argv


def load_lua(name: str) -> str:
    """The text of ``receiver/lua/<name>.lua``."""
    return resources.files("receiver").joinpath("lua", f"{name}.lua").read_text("utf-8")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


# --- the Redis side ---------------------------------------------------------------------


class Guards:
    def __init__(
        self,
        redis: Redis,
        policy: NamespacePolicy,
        settings: GuardSettings | None = None,
        *,
        guards: Sequence[Guard] = GUARDS,
    ) -> None:
        self._redis = redis
        self._policy = policy
        self._settings = settings or GuardSettings()
        self._guards = tuple(guards)
        self._keys = GuardKeys(self._settings.key_prefix)
        # register_script runs EVALSHA and, on NOSCRIPT (a restarted or flushed server),
        # loads the script and retries.
        self._admit = redis.register_script(load_lua("admit"))
        self._release = redis.register_script(load_lua("release"))
        self._record_failure = redis.register_script(load_lua("record_failure"))
        self._pause = redis.register_script(load_lua("pause"))

    @property
    def settings(self) -> GuardSettings:
        return self._settings

    @property
    def keys(self) -> GuardKeys:
        return self._keys

    async def _call(self, what: str, make: Callable[[], Awaitable[_T]]) -> _T:
        try:
            async with asyncio.timeout(self._settings.timeout_s):
                return await make()
        except (RedisError, OSError, TimeoutError) as exc:
            raise GuardUnavailable(f"redis unavailable during {what}: {exc!r}") from exc

    async def admit(self, req: AdmissionRequest) -> Admission:
        """Check every guard in order; admit (and commit them all) or refuse with no effect.

        Idempotent per ``req.run_id``: the run's own cooldown, rate and budget entries and its
        own lock do not refuse it again; a repeated admission gets a new token and fence."""
        # The run id in the token names the holder in refusals and makes the lock re-entrant
        # for the same run; the random part makes the token unguessable and unique.
        token = f"{req.run_id}/{secrets.token_hex(16)}"
        keys, argv = admit_arguments(
            self._guards, req, policy=self._policy, settings=self._settings, lock_token=token
        )
        reply = await self._call("admit", lambda: self._admit(keys=keys, args=argv))
        if int(reply[0]) == 1:
            fence = int(reply[2])
            return Admission(
                admitted=True,
                lock_token=_text(reply[1]) or None,
                fence=fence if fence >= 0 else None,
            )
        retry_ms = int(reply[3])
        refusal = Refusal(
            guard=_text(reply[1]),
            reason=_text(reply[2]),
            retry_at=from_ms(retry_ms) if retry_ms >= 0 else None,
        )
        return Admission(admitted=False, refusal=refusal)

    async def release(self, req: AdmissionRequest, admission: Admission) -> bool:
        """Release the target lock if it is still ours. True when it was released."""
        if not admission.admitted or admission.lock_token is None:
            return False
        key, token = self._keys.lock(req.target), admission.lock_token
        reply = await self._call("release", lambda: self._release(keys=[key], args=[token]))
        return int(reply) == 1

    async def record_result(self, rule: str, success: bool) -> datetime | None:
        """Feed the rule's circuit breaker. Returns until when it is open, None if closed.

        Only failures are recorded; a success does not erase them."""
        if success:
            return None
        s = self._settings
        keys = [self._keys.failures(rule), self._keys.breaker(rule)]
        args: list[Arg] = [
            secrets.token_hex(8),
            s.breaker_failures,
            to_ms(s.breaker_window_s),
            to_ms(s.breaker_open_for_s),
        ]
        reply = await self._call("record_result", lambda: self._record_failure(keys, args))
        until = int(reply)
        return from_ms(until) if until >= 0 else None

    async def pause(self, seconds: float | None, reason: str) -> datetime | None:
        """Refuse every admission until `seconds` pass (None: until resume()). Returns the end."""
        duration: Arg = "" if seconds is None else to_ms(seconds)
        key = self._keys.pause()
        reply = await self._call("pause", lambda: self._pause(keys=[key], args=[reason, duration]))
        until = int(reply)
        return from_ms(until) if until >= 0 else None

    async def resume(self) -> None:
        await self._call("resume", lambda: self._redis.delete(self._keys.pause()))

    async def ping(self) -> None:
        """Raises GuardUnavailable when Redis does not answer."""
        await self._call("ping", lambda: self._redis.ping())

    async def status(self) -> dict[str, Any]:
        """Pause, breakers and budget as plain data, for the CLI and /readyz."""
        return await self._call("status", self._status)

    async def _status(self) -> dict[str, Any]:
        s, r = self._settings, self._redis
        async with r.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hgetall(self._keys.pause())
            results = await pipe.execute()
        seconds, micros = results[0]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        pause = {_text(k): _text(v) for k, v in results[1].items()}
        used = await r.zcount(self._keys.budget(), f"({now_ms - to_ms(s.budget_window_s)}", "+inf")

        breakers: dict[str, dict[str, Any]] = {}
        failures_prefix = self._keys.failures("")
        open_prefix = self._keys.breaker("")
        for prefix in (failures_prefix, open_prefix):
            async for raw in r.scan_iter(match=_glob_escape(prefix) + "*", count=500):
                rule = _text(raw)[len(prefix) :]
                breakers.setdefault(rule, {"open": False, "open_until": None, "failures": 0})
        for rule, state in breakers.items():
            state["failures"] = await r.zcount(
                self._keys.failures(rule), f"({now_ms - to_ms(s.breaker_window_s)}", "+inf"
            )
            opened = await r.get(self._keys.breaker(rule))
            if opened is not None:
                state["open"] = True
                state["open_until"] = from_ms(int(_text(opened))).isoformat()

        paused_until = pause.get("until", "")
        return {
            "now": from_ms(now_ms).isoformat(),
            "paused": bool(pause),
            "pause": {
                "reason": pause.get("reason", ""),
                "since": from_ms(int(pause["since"])).isoformat() if "since" in pause else None,
                "until": from_ms(int(paused_until)).isoformat() if paused_until else None,
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
