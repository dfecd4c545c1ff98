"""A `kubernetes.set_env` value too long for the step's write record is a lint warning at its
step (the rules still load): every run would refuse the step (remediations/kubernetes/
container.py, ``SetEnvParams.lint_warnings``; the cap in record_size.py)."""

from __future__ import annotations

import json

from receiver.rules.compile import check_files, compile_files
from remediations.kubernetes.record_size import RECORD_CAP
from remediations.registry import default_registry as registry
from tests.support.rules import POLICY


def _rule(value: str) -> str:
    return (
        "rules:\n"
        "  - name: r\n"
        "    match: ['alertname=\"X\"']\n"
        "    target: {kind: Deployment, namespace: shop, name: web}\n"
        "    steps:\n"
        "      - action: kubernetes.set_env\n"
        f"        params: {{container: app, name: BIG, value: {json.dumps(value)}}}\n"
    )


def test_a_value_that_can_never_be_recorded_is_a_warning_at_its_step() -> None:
    value = "x" * (RECORD_CAP // 2)  # kept twice with its quotes: over the cap on that alone
    errors, warnings = check_files({"a.yaml": _rule(value)}, registry(), POLICY)
    assert errors == []
    (warning,) = warnings
    assert (warning.file, warning.line, warning.warning) == ("a.yaml", 7, True)
    assert "kubernetes.set_env: value (8,192 bytes) can never be written" in warning.message
    assert f"over the cap of {RECORD_CAP:,} bytes per record" in warning.message
    # A warning: the rules load.
    assert len(compile_files({"a.yaml": _rule(value)}, registry(), POLICY).rules) == 1


def test_non_ascii_text_is_counted_as_the_record_escapes_it() -> None:
    # 1,400 characters of 3 UTF-8 bytes (4,200 bytes) take 6 bytes each escaped: 8,402 twice.
    _, warnings = check_files({"a.yaml": _rule("日" * 1400)}, registry(), POLICY)
    (warning,) = warnings
    assert "value (4,200 bytes) can never be written" in warning.message


def test_a_value_that_can_fit_is_not_warned_about() -> None:
    for value in ("x" * 7900, ""):
        _, warnings = check_files({"a.yaml": _rule(value)}, registry(), POLICY)
        assert warnings == [], value


def test_a_templated_value_is_an_error_not_a_warning_of_its_size() -> None:
    # A value is never rendered: braces and all, it would have been the variable's value.
    errors, warnings = check_files(
        {"a.yaml": _rule("{{ labels.alertname }}" + "x" * 9000)}, registry(), POLICY
    )
    assert warnings == []
    assert ["is taken as written, not as a template" in e.message for e in errors] == [True]
