"""Guard policy, pure: what each guard checks, in which order, with which keys and arguments.

The guards, in order: global pause -> namespace policy -> per-(rule, target) cooldown ->
per-rule rate -> global budget of disruptive actions -> circuit breaker -> per-target lock.
This module declares them (``GUARDS``) and computes what the Lua script receives
(``admit_arguments``); ``redis_guards`` runs the script. Nothing here touches Redis or a file,
so the order, the keys and the arithmetic are tested without a server.

Adding a guard is adding an item to ``GUARDS`` and a ``checks.<name>`` (and, if it writes,
``commits.<name>``) function in ``lua/admit.lua``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from receiver.model import GuardSpec, NamespacePolicy
from remediations.targets import KINDS, Target

__all__ = [
    "CLUSTER_KEY_PREFIX",
    "GUARDS",
    "REFUSAL_NAMES",
    "TEMPLATE_GUARD",
    "Admission",
    "AdmissionRequest",
    "Guard",
    "GuardError",
    "GuardKeys",
    "GuardSettings",
    "GuardUnavailable",
    "Refusal",
    "admit_arguments",
    "admit_call",
    "applicable",
    "epoch_ms",
    "from_ms",
    "hash_tag",
    "lock_token",
    "to_ms",
]


class GuardUnavailable(Exception):
    """Redis could not be asked. Nothing may run: the caller keeps the event pending."""


class GuardError(Exception):
    """Redis was asked and refused the guards' script with an error (a value the script cannot
    take, a bug): not an outage, and asking again will not help. Nothing ran; the work fails,
    and the worker counts it toward dead-lettering."""


@dataclass(frozen=True, slots=True)
class GuardSettings:
    key_prefix: str = "remediator:"
    # Global budget of disruptive actions, all rules together, in a sliding window.
    budget_count: int = 10
    budget_window_s: float = 3600.0
    # Circuit breaker: `breaker_failures` failed runs of a rule within `breaker_window_s`
    # refuse that rule for `breaker_open_for_s`.
    breaker_failures: int = 3
    breaker_window_s: float = 3600.0
    breaker_open_for_s: float = 1800.0
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
    # retry_at less the refusal's time, both on the Redis clock (whatever the service's says):
    # how long a wait for it is. None when retry_at is, or when unknown.
    retry_in_s: float | None = None


@dataclass(frozen=True, slots=True)
class Admission:
    admitted: bool
    refusal: Refusal | None = None
    lock_token: str | None = None
    # Fencing token: strictly increasing per target, to pass along with every write.
    fence: int | None = None
    # The guards that were asked, in order (for the audit log: which ones passed).
    checked: tuple[str, ...] = ()
    # True when this admission put the run in the global budget's window (drew a slot); False
    # when the run was in it already (a re-admission, an escalation within its run's window)
    # or the budget was not asked.
    budget_drawn: bool = False


# --- pure pieces: keys, durations, the declared guard list ---------------------------------


def lock_token(run_id: str, issued_ms: int, nonce: str) -> str:
    """The target lock's token: ``<run id>/`` then 44 hex digits, the 12 of ``issued_ms`` (when
    the client issued it, clamped to 0..16**12-1, past the year 9999) and the 32 of ``nonce``.
    An older version reads the run id the same way (all hex after the last ``/``); lua/admit.lua
    compares issue times to tell a late admission of the run from its retry."""
    if len(nonce) != 32 or nonce.strip("0123456789abcdef"):
        raise ValueError(f"a lock token's nonce is 32 lowercase hex digits, not {nonce!r}")
    issued = min(max(issued_ms, 0), 16**12 - 1)
    return f"{run_id}/{issued:012x}{nonce}"


def to_ms(seconds: float) -> int:
    """A positive duration in whole milliseconds, rounded up, never below 1 ms."""
    return max(1, math.ceil(seconds * 1000))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def epoch_ms(at: datetime) -> int:
    """An aware datetime as whole milliseconds since the epoch (the scripts' clock argument)."""
    # timedelta arithmetic is exact; a float timestamp loses the millisecond past 2**42 ms.
    return (at - _EPOCH) // timedelta(milliseconds=1)


# Redis Cluster runs a script only when every key in its KEYS hashes to one slot, and the slot of
# a key holding a hash tag (its first "{...}" with something inside) is that of the tag alone.
# Every admission reads the global pause and, when disruptive, the global budget, beside its
# rule's and its target's keys, all in ONE script: that is what makes it atomic across
# replicas (no budget overspent, no run slipping past a pause). So every admission must run in
# the slot of the pause key, and with it every key of every rule and target: there is no finer
# split that keeps an admission atomic. All guard keys therefore share ONE hash tag, the
# prefix's, and live on one master of the cluster (its replica takes over on failover). Tags
# per target were weighed and refused: the budget and the pause would then be checked in a
# second script, and two admissions could both pass a budget with one slot left. An admission
# is tens of microseconds of Lua: one master carries thousands a second, past a storm's pace.
# A standalone or Sentinel Redis needs no tag, and keeps the untagged keys of earlier versions
# (an upgrade keeps its pauses, cooldowns and locks).
CLUSTER_KEY_PREFIX = "{remediator}:"


def hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes to pick its slot: the text between the first
    ``{`` and the first ``}`` after it, when not empty; None when the whole key is hashed.
    Source: the Redis Cluster specification, "Hash tags"."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end < 0 or end == start + 1:
        return None
    return key[start + 1 : end]


@dataclass(frozen=True, slots=True)
class GuardKeys:
    """Every Redis key the guards use, under one prefix (``prefix + what + names``)."""

    prefix: str

    def require_one_slot(self) -> str:
        """The hash tag every key shares (for Redis Cluster); ValueError when the prefix has
        none, e.g. ``remediator:`` rather than ``{remediator}:``."""
        tag = hash_tag(self.prefix)
        if tag is None:
            raise ValueError(
                f"guard key prefix {self.prefix!r} has no hash tag: on Redis Cluster every key of"
                f" an admission must share one, e.g. {CLUSTER_KEY_PREFIX!r}"
            )
        return tag

    def pause(self) -> str:
        return f"{self.prefix}pause"

    def ready(self) -> str:
        """The key readiness writes to tell whether the guards can write (``Guards.probe``)."""
        return f"{self.prefix}ready"

    def audit_outbox(self) -> str:
        """The stream of pauses and resumes not yet in the audit log (``guards.switch``)."""
        return f"{self.prefix}audit:outbox"

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

    def released(self, target: Target, run_id: str) -> str:
        """The mark a run's release of ``target``'s lock leaves (``lua/release.lua``)."""
        return f"{self.prefix}released:{target.key}:{run_id}"

    def digest(self, rule: str, channel: str) -> tuple[str, str, str]:
        """The refusal digest window of ``rule`` to ``channel``: its hash, the set of its
        targets and the set of its runs (``lua/digest.lua``)."""
        where = f"{rule}:{channel}"
        return (
            f"{self.prefix}digest:open:{where}",
            f"{self.prefix}digest:targets:{where}",
            f"{self.prefix}digest:runs:{where}",
        )

    def digests_due(self) -> str:
        """The open digest windows, by when they end."""
        return f"{self.prefix}digest:due"

    def digests_closed(self) -> str:
        """The digests of ended windows, to send, by when one may claim them."""
        return f"{self.prefix}digest:closed"


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


def _namespaced(c: _Ctx) -> bool:
    # A PostgreSQL database or a Redis queue has no namespace for the policy to speak about. An
    # unknown kind is checked (and refused by any allow list): fail closed.
    kind = KINDS.get(c.req.target.kind)
    return kind is None or kind.namespaced


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
        applies=_namespaced,
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
        keys=lambda c: [
            c.keys.lock(c.req.target),
            c.keys.fence(c.req.target),
            c.keys.released(c.req.target, c.req.run_id),
        ],
        args=lambda c: [c.lock_token, to_ms(c.settings.lock_ttl_s)],
    ),
)

# What refuses a run one of whose steps cannot be rendered over its alert, before the guards
# above are asked (receiver.pipeline.stages.Admit): the alert's fault, not the remediation's.
TEMPLATE_GUARD = "template"

# Every name a run's refusal may give (``refusal_guard``): the guards, then the template check.
REFUSAL_NAMES: tuple[str, ...] = (*(g.name for g in GUARDS), TEMPLATE_GUARD)


def applicable(
    guards: Sequence[Guard],
    req: AdmissionRequest,
    *,
    policy: NamespacePolicy,
    settings: GuardSettings,
) -> tuple[str, ...]:
    """The names of the guards that apply to ``req``, in order: the ones admission asks."""
    ctx = _Ctx(req, GuardKeys(settings.key_prefix), policy, settings, "")
    return tuple(guard.name for guard in guards if guard.applies(ctx))


def admit_arguments(
    guards: Sequence[Guard],
    req: AdmissionRequest,
    *,
    policy: NamespacePolicy,
    settings: GuardSettings,
    lock_token: str,
    now_ms: int | None = None,
) -> tuple[list[str], list[Arg]]:
    """KEYS and ARGV for admit.lua: run id, guard count, then (name, #keys, #args, args...),
    then ``now_ms`` when given: the clock the script decides with instead of the server's
    TIME (a rule test's simulated clock)."""
    keys, argv, _ = admit_call(
        guards, req, policy=policy, settings=settings, lock_token=lock_token, now_ms=now_ms
    )
    return keys, argv


def admit_call(
    guards: Sequence[Guard],
    req: AdmissionRequest,
    *,
    policy: NamespacePolicy,
    settings: GuardSettings,
    lock_token: str,
    now_ms: int | None = None,
) -> tuple[list[str], list[Arg], tuple[str, ...]]:
    """``admit_arguments``' KEYS and ARGV, and the names of the guards they ask, in order
    (``applicable``): one pass over the guards for both, as every admission needs both."""
    ctx = _Ctx(req, GuardKeys(settings.key_prefix), policy, settings, lock_token)
    keys: list[str] = []
    argv: list[Arg] = [req.run_id, 0]
    names: list[str] = []
    for guard in guards:
        if not guard.applies(ctx):
            continue
        gkeys, gargs = list(guard.keys(ctx)), list(guard.args(ctx))
        keys.extend(gkeys)
        argv.extend([guard.name, len(gkeys), len(gargs), *gargs])
        names.append(guard.name)
    argv[1] = len(names)
    if now_ms is not None:
        argv.append(now_ms)
    return keys, argv, tuple(names)
