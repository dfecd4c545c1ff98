"""The params of the actions that reach other systems (HTTP, notify, PostgreSQL, Redis
queues): refused when the rule loads, before any server is involved. Pure."""

from __future__ import annotations

import pytest

from remediations.http.endpoints import HttpCallParams
from remediations.notify.action import NotifyParams
from remediations.postgres.sessions import TerminateIdleParams
from remediations.redis_queue.queues import End, Layout, QueueSpec


def test_http_call_body_templates_are_checked_when_the_rule_loads() -> None:
    with pytest.raises(ValueError, match="template line 1"):
        HttpCallParams.model_validate({"body": {"x": "{{ labels.service "}})


def test_notify_templates_are_checked_when_the_rule_loads() -> None:
    with pytest.raises(ValueError, match="template line 2"):
        NotifyParams.model_validate({"channel": "oncall", "message": "ok\n{% if x %}"})
    with pytest.raises(ValueError, match="channel name"):
        NotifyParams.model_validate({"channel": "On Call", "message": "x"})


def test_terminate_idle_params_refuse_what_would_widen_the_blast_radius() -> None:
    with pytest.raises(ValueError, match="roles"):
        TerminateIdleParams.model_validate({"roles": [], "idle_for": "10m"})
    with pytest.raises(ValueError, match="max_sessions"):
        TerminateIdleParams.model_validate({"roles": ["app"], "idle_for": "10m", "max_sessions": 0})
    with pytest.raises(ValueError, match="idle_for"):
        TerminateIdleParams.model_validate({"roles": ["app"], "idle_for": "0s"})
    with pytest.raises(ValueError, match="states"):
        TerminateIdleParams.model_validate(
            {"roles": ["app"], "idle_for": "1m", "states": ["active"]}
        )
    params = TerminateIdleParams.model_validate({"roles": ["app"], "idle_for": "10m"})
    dumped = params.model_dump(mode="json")
    assert dumped["idle_for"] == "10m"
    assert TerminateIdleParams.model_validate(dumped) == params


def test_queue_specs_refuse_keys_that_do_not_fit_the_layout() -> None:
    with pytest.raises(ValueError, match="dead_letter_key"):
        QueueSpec(Layout.LIST, "q")
    with pytest.raises(ValueError, match="differ"):
        QueueSpec(Layout.LIST, "q", "q")
    with pytest.raises(ValueError, match="group"):
        QueueSpec(Layout.STREAM, "s")
    with pytest.raises(ValueError, match="fixed"):
        QueueSpec(Layout.CELERY, "celery", "dead", push=End.RIGHT)


@pytest.mark.parametrize("idle_for", ["1ms", "999ms"])
def test_a_duration_param_under_its_bound_says_the_bound_as_a_duration(idle_for: str) -> None:
    # Was "Input should be greater than or equal to 1": a number, where the rule wrote 1ms.
    with pytest.raises(ValueError, match=r"idle_for\n") as caught:
        TerminateIdleParams.model_validate({"roles": ["app"], "idle_for": idle_for})
    assert f"{idle_for!r} is out of range: give at least 1s" in str(caught.value)
    assert "greater than or equal" not in str(caught.value)
