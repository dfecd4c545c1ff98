"""The pure half of the guards: keys, durations, settings and the declared guard list."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.guards.policy import (
    CLUSTER_KEY_PREFIX,
    GUARDS,
    AdmissionRequest,
    GuardKeys,
    GuardSettings,
    admit_arguments,
    admit_call,
    applicable,
    epoch_ms,
    from_ms,
    hash_tag,
    lock_token,
    to_ms,
)
from receiver.guards.scripts import load_lua
from receiver.model import GuardSpec, NamespacePolicy, Target
from remediations.targets import KINDS

TARGET = Target("Deployment", "shop", "checkout")


def request(*, disruptive: bool = True, spec: GuardSpec | None = None) -> AdmissionRequest:
    return AdmissionRequest("run-1", "restart", TARGET, disruptive, spec or GuardSpec())


def guard_names(argv: list[str | int]) -> list[str]:
    """Walk admit.lua's ARGV layout: run id, count, then (name, #keys, #args, args...)."""
    names, i = [], 2
    for _ in range(int(argv[1])):
        names.append(str(argv[i]))
        i += 3 + int(argv[i + 2])
    assert i == len(argv)
    return names


def test_declared_order_is_the_designed_one() -> None:
    assert [g.name for g in GUARDS] == [
        "pause",
        "namespace",
        "cooldown",
        "rate",
        "budget",
        "breaker",
        "lock",
    ]


def test_every_declared_guard_has_a_lua_check() -> None:
    script = load_lua("admit")
    for guard in GUARDS:
        assert re.search(rf"^checks\.{guard.name} = function", script, re.M), guard.name


# Every script of the guards, by its file's name under lua/.
_LUA_NAMES = [
    "admit",
    "release",
    "release_run",
    "record_failure",
    "pause",
    "resume",
    "outbox_due",
    "status",
]


@pytest.mark.parametrize("name", _LUA_NAMES)
def test_scripts_load_by_name(name: str) -> None:
    assert "redis.call" in load_lua(name)


def test_guards_that_do_not_apply_are_left_out() -> None:
    settings = GuardSettings()
    _, argv = admit_arguments(
        GUARDS,
        request(disruptive=False),
        policy=NamespacePolicy(),
        settings=settings,
        lock_token="tok",
    )
    assert guard_names(argv) == ["pause", "namespace", "breaker", "lock"]

    full = GuardSpec(cooldown_s=900, max_runs=3, max_runs_per_s=3600)
    keys, argv = admit_arguments(
        GUARDS, request(spec=full), policy=NamespacePolicy(), settings=settings, lock_token="tok"
    )
    assert guard_names(argv) == [g.name for g in GUARDS]
    k = GuardKeys("remediator:")
    assert keys == [
        k.pause(),
        k.cooldown("restart", TARGET),
        k.rate("restart"),
        k.budget(),
        k.breaker("restart"),
        k.lock(TARGET),
        k.fence(TARGET),
        k.released(TARGET, "run-1"),
    ]
    assert argv[:2] == ["run-1", 7]
    assert argv[argv.index("cooldown") :][:4] == ["cooldown", 1, 1, 900_000]
    assert argv[argv.index("rate") :][:5] == ["rate", 1, 2, 3, 3_600_000]
    assert argv[argv.index("budget") :][:5] == ["budget", 1, 2, 10, 3_600_000]
    assert argv[argv.index("lock") :][:5] == ["lock", 3, 2, "tok", 600_000]


@pytest.mark.parametrize(
    ("policy", "flag"),
    [
        (NamespacePolicy(), "1"),
        (NamespacePolicy(allow=("payments",)), "0"),
        (NamespacePolicy(deny=("shop",)), "0"),
    ],
)
def test_namespace_policy_is_decided_in_python_and_passed_in_order(
    policy: NamespacePolicy, flag: str
) -> None:
    _, argv = admit_arguments(
        GUARDS, request(), policy=policy, settings=GuardSettings(), lock_token="t"
    )
    i = argv.index("namespace")
    assert argv[i : i + 5] == ["namespace", 0, 2, flag, "shop"]


def test_zero_cooldown_or_missing_window_means_no_guard() -> None:
    spec = GuardSpec(cooldown_s=0, max_runs=3, max_runs_per_s=None)
    _, argv = admit_arguments(
        GUARDS,
        request(spec=spec),
        policy=NamespacePolicy(),
        settings=GuardSettings(),
        lock_token="t",
    )
    assert "cooldown" not in argv
    assert "rate" not in argv


def test_keys_share_the_prefix_and_separate_rules_and_targets() -> None:
    k = GuardKeys("x:")
    other = Target("Deployment", "shop", "cart")
    keys = [
        k.pause(),
        k.budget(),
        k.cooldown("a", TARGET),
        k.cooldown("b", TARGET),
        k.cooldown("a", other),
        k.rate("a"),
        k.rate("b"),
        k.failures("a"),
        k.breaker("a"),
        k.lock(TARGET),
        k.lock(other),
        k.fence(TARGET),
        k.released(TARGET, "run-1"),
        k.released(TARGET, "run-2"),
        k.released(other, "run-1"),
    ]
    assert all(key.startswith("x:") for key in keys)
    assert len(set(keys)) == len(keys)
    assert k.breaker("a").endswith(":a")
    assert k.failures("a").endswith(":a")


def test_settings_defaults_and_validation() -> None:
    s = GuardSettings()
    assert (s.key_prefix, s.budget_count, s.budget_window_s) == ("remediator:", 10, 3600)
    # README: 3 failures within 1h open the breaker for 30m.
    assert (s.breaker_failures, s.breaker_window_s, s.breaker_open_for_s) == (3, 3600, 1800)
    assert s.lock_ttl_s == 600
    with pytest.raises(ValueError, match="lock_ttl_s"):
        GuardSettings(lock_ttl_s=0)
    with pytest.raises(ValueError, match="breaker_failures"):
        GuardSettings(breaker_failures=0)


@given(st.floats(min_value=0, max_value=1e7, allow_nan=False))
def test_to_ms_rounds_up_and_is_never_zero(seconds: float) -> None:
    ms = to_ms(seconds)
    assert ms >= 1
    assert ms >= seconds * 1000
    assert ms - 1 < max(seconds * 1000, 1)


@given(st.integers(min_value=0, max_value=2**42))
def test_from_ms_is_utc_and_exact_to_the_millisecond(ms: int) -> None:
    at = from_ms(ms)
    assert at.tzinfo is UTC
    assert round((at - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() * 1000) == ms


def test_an_injected_clock_is_the_last_argument_and_changes_nothing_else() -> None:
    spec = GuardSpec(cooldown_s=900, max_runs=3, max_runs_per_s=3600)
    args = {"policy": NamespacePolicy(), "settings": GuardSettings(), "lock_token": "tok"}
    keys, argv = admit_arguments(GUARDS, request(spec=spec), **args)  # type: ignore[arg-type]
    timed_keys, timed = admit_arguments(
        GUARDS,
        request(spec=spec),
        now_ms=1_700_000_000_123,
        **args,  # type: ignore[arg-type]
    )
    assert timed_keys == keys
    assert timed == [*argv, 1_700_000_000_123]


@given(st.integers(min_value=0, max_value=2**42))
def test_epoch_ms_reverses_from_ms(ms: int) -> None:
    assert epoch_ms(from_ms(ms)) == ms


# A key built inside a script would be missing from KEYS: Redis Cluster would run the script on
# the node of the declared keys and refuse (or misroute) the other one.
_CALL = re.compile(r"redis\.call\('([A-Z]+)'(?:, ([^,)]+))?")
_HELPER_CALL = re.compile(r"\b(read_until|write_until|window_check|window_commit)\(([^,)]+)")


@pytest.mark.parametrize("name", _LUA_NAMES)
def test_scripts_touch_only_the_keys_they_are_given(name: str) -> None:
    script = load_lua(name)
    calls = _CALL.findall(script)
    assert calls
    for command, first in calls:
        if command == "TIME":
            continue
        # KEYS[n], a guard's keys[n], or `key`: a helper's parameter, passed keys[n] below.
        assert re.fullmatch(r"(KEYS|keys)\[\d\]|key", first), (command, first)
    for helper, first in _HELPER_CALL.findall(script):
        if first == "key":
            continue  # the helper's own definition: function read_until(key)
        assert re.fullmatch(r"keys\[\d\]", first), (helper, first)


@given(
    rule=st.text(min_size=1, max_size=20),
    namespace=st.text(min_size=1, max_size=20),
    name=st.text(min_size=1, max_size=20),
)
def test_every_key_of_an_admission_shares_the_cluster_tag(
    rule: str, namespace: str, name: str
) -> None:
    """Names with braces of their own too: the prefix's tag comes first, and the first wins."""
    settings = GuardSettings(key_prefix=CLUSTER_KEY_PREFIX)
    target = Target("Deployment", namespace, name)
    spec = GuardSpec(cooldown_s=60, max_runs=3, max_runs_per_s=3600)
    req = AdmissionRequest("run-1", rule, target, True, spec)
    keys, argv = admit_arguments(
        GUARDS, req, policy=NamespacePolicy(), settings=settings, lock_token="t"
    )
    assert guard_names(argv) == [g.name for g in GUARDS]
    k = GuardKeys(settings.key_prefix)
    # The other scripts' keys: release (lock, release mark), record_failure (failures,
    # breaker), pause and resume (the pause, the audit outbox).
    keys += [k.lock(target), k.released(target, "run-1")]
    keys += [k.failures(rule), k.breaker(rule), k.pause(), k.audit_outbox()]
    assert {hash_tag(key) for key in keys} == {"remediator"}


_OPTIONAL_SECONDS = st.none() | st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(
    kind=st.sampled_from([*KINDS, "Unknown"]),
    spec=st.builds(
        GuardSpec,
        cooldown_s=_OPTIONAL_SECONDS,
        max_runs=st.none() | st.integers(min_value=0, max_value=10),
        max_runs_per_s=_OPTIONAL_SECONDS,
    ),
    disruptive=st.booleans(),
    only=st.none() | st.sets(st.sampled_from([g.name for g in GUARDS])),
    now_ms=st.none() | st.integers(min_value=0, max_value=2**41),
)
def test_one_pass_gives_the_arguments_and_the_guards_asked(
    kind: str, spec: GuardSpec, disruptive: bool, only: set[str] | None, now_ms: int | None
) -> None:
    # Guards.admit takes both from admit_call: the arguments as admit_arguments makes them,
    # and what it records as checked as applicable says.
    guards = [g for g in GUARDS if only is None or g.name in only]
    req = AdmissionRequest(
        run_id="run-1",
        rule="restart",
        target=Target(kind, "shop", "checkout"),
        disruptive=disruptive,
        spec=spec,
    )
    policy, settings = NamespacePolicy(allow=("shop",)), GuardSettings()
    keys, argv, names = admit_call(
        guards, req, policy=policy, settings=settings, lock_token="tok", now_ms=now_ms
    )
    assert (keys, argv) == admit_arguments(
        guards, req, policy=policy, settings=settings, lock_token="tok", now_ms=now_ms
    )
    assert names == applicable(guards, req, policy=policy, settings=settings)


# How an older version's admit.lua finds a token's run (lock_holder): the Lua pattern
# '^(.*)/[0-9a-f]+$' as a Python regex (Lua's "." takes a newline too). During a rolling
# update it reads the new tokens as well.
_OLD_HOLDER = re.compile(r"(.*)/[0-9a-f]+", re.DOTALL)
_NONCE = "0123456789abcdef" * 2


@given(
    run_id=st.text(min_size=1, max_size=40),
    issued=st.integers(min_value=-(2**50), max_value=2**50),
)
def test_a_lock_token_names_its_run_to_older_versions_and_carries_its_issue_time(
    run_id: str, issued: int
) -> None:
    token = lock_token(run_id, issued, _NONCE)
    holder = _OLD_HOLDER.fullmatch(token)
    assert holder is not None
    assert holder.group(1) == run_id
    digits = token.rsplit("/", 1)[1]
    # 44 hex digits: admit.lua's TOKEN_TIME; an older token has 32, and no time.
    assert len(digits) == 44
    assert digits[12:] == _NONCE
    assert int(digits[:12], 16) == min(max(issued, 0), 16**12 - 1)


def test_a_lock_tokens_time_covers_every_datetime_and_its_order() -> None:
    last = epoch_ms(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC))
    assert lock_token("r", last, _NONCE) == f"r/{last:012x}{_NONCE}"
    assert lock_token("r", 1, _NONCE) < lock_token("r", 2, _NONCE)


@pytest.mark.parametrize("nonce", ["", "ab" * 8, "AB" * 16, "zz" * 16, "ab" * 17])
def test_a_lock_token_refuses_a_nonce_that_would_hide_its_time(nonce: str) -> None:
    with pytest.raises(ValueError, match="32 lowercase hex digits"):
        lock_token("run-1", 0, nonce)
