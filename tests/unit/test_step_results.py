"""A failed step's result says whether the alert's own values were at fault
(receiver/pipeline/steps.py ``failed``): only a template that could not be rendered over them."""

from __future__ import annotations

import pytest

from receiver.pipeline.steps import failed
from remediations.base import ActionError, Outcome, ParamsError, TransientActionError
from remediations.template_work import TemplateFailed, TemplateTooLarge


@pytest.mark.parametrize(
    ("error", "alert_fault"),
    [
        (TemplateFailed("template: ZeroDivisionError: division by zero"), True),
        (TemplateTooLarge("template: renders more than 65536 characters"), True),
        (ActionError("endpoint 'sink' answered HTTP 500"), False),
        (TransientActionError("connection refused"), False),
        (ParamsError("http.call", "body is larger than 64 KiB"), False),
    ],
)
def test_only_a_template_over_the_alert_is_the_alerts_fault(
    error: ActionError, alert_fault: bool
) -> None:
    result = failed(error, f"said: {error.message}")
    assert result.outcome is Outcome.FAILED
    assert result.message == f"said: {error.message}"
    assert result.alert_fault is alert_fault
