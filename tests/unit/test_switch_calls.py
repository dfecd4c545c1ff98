"""The kill switch's script arguments (receiver/guards/switch_calls.py), pure: the one shape
both the rule tests' ``Guards.pause``/``resume`` and the routes' ``KillSwitch`` send to
pause.lua and resume.lua, the routes' only adding the outbox and its record."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from receiver.guards.policy import CLUSTER_KEY_PREFIX, GuardKeys, to_ms
from receiver.guards.scripts import load_lua
from receiver.guards.switch_calls import Queued, pause_call, resume_call

KEYS = GuardKeys("remediator:")
RECORD = Queued("e1", 1000, '{"by": "alice"}')


def test_a_pause_without_the_outbox_is_the_pause_key_and_four_arguments() -> None:
    assert pause_call(KEYS, None, "freeze") == (["remediator:pause"], ["freeze", "", "", ""])
    assert pause_call(KEYS, 1.5, "freeze", by="alice", now_ms=42) == (
        ["remediator:pause"],
        ["freeze", 1500, 42, "alice"],
    )


def test_a_pause_with_the_outbox_adds_its_key_and_the_record() -> None:
    assert pause_call(KEYS, 60, "freeze", by="alice", queued=RECORD) == (
        ["remediator:pause", "remediator:audit:outbox"],
        ["freeze", 60000, "", "alice", "e1", 1000, '{"by": "alice"}'],
    )


def test_a_resume_is_the_pause_key_and_with_the_outbox_the_record() -> None:
    assert resume_call(KEYS) == (["remediator:pause"], [])
    assert resume_call(KEYS, queued=RECORD) == (
        ["remediator:pause", "remediator:audit:outbox"],
        ["e1", 1000, '{"by": "alice"}'],
    )


@given(
    seconds=st.none() | st.floats(min_value=0.001, max_value=7 * 86400),
    reason=st.text(max_size=50),
    by=st.text(max_size=20),
    prefix=st.sampled_from(["remediator:", CLUSTER_KEY_PREFIX, "x{t}:"]),
)
def test_the_routes_call_is_the_simulations_and_the_record(
    seconds: float | None, reason: str, by: str, prefix: str
) -> None:
    keys = GuardKeys(prefix)
    plain_keys, plain = pause_call(keys, seconds, reason, by=by)
    outbox_keys, outboxed = pause_call(keys, seconds, reason, by=by, queued=RECORD)
    assert outbox_keys == [*plain_keys, keys.audit_outbox()]
    assert outboxed == [*plain, RECORD.entry, RECORD.cap, RECORD.data]
    assert plain[1] == ("" if seconds is None else to_ms(seconds))
    # Under the guards' prefix: on a cluster, in their one slot.
    assert all(k.startswith(prefix) for k in outbox_keys)


def _argv_read(script: str) -> int:
    return max(int(n) for n in re.findall(r"ARGV\[(\d+)\]", load_lua(script)))


def test_the_scripts_read_exactly_the_arguments_built() -> None:
    assert _argv_read("pause") == len(pause_call(KEYS, 1, "r", queued=RECORD)[1])
    assert _argv_read("resume") == len(resume_call(KEYS, queued=RECORD)[1])
