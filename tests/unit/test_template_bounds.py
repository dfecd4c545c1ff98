"""Templates in rule params are bounded like messages (remediations/templates.py): what would
build a huge string, list or integer on the event loop is refused at lint time when it is
written as constants, and at render time (quickly) when it comes from the alert; the output
stops at MAX_RENDERED characters. Ordinary templates are unaffected."""

from __future__ import annotations

import time

import pytest

from receiver.rules.compile import lint_files
from remediations.base import ActionError
from remediations.registry import default_registry
from remediations.templates import MAX_RENDERED, TemplateTooLarge, check_template, render
from tests.support.rules import POLICY


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ('{{ "x" * 100000000 }}', "1 x 100000000 is more than 65536 characters"),
        ('{{ 100000000 * "x" }}', "1 x 100000000 is more than 65536 characters"),
        ("{{ [1, 2] * 100000 }}", "2 x 100000 is more than"),
        ('{{ "ab" * 10 * 10 * 10 * 10 * 10 }}', "is more than 65536 characters"),
        ("{{ 10 ** 100000000 }}", "a power over 4096 bits"),
        ('{{ "x" | center(100000000) }}', "center given 100000000"),
        ('{{ "x" | indent(width=100000000) }}', "indent given 100000000"),
        ("{{ [1] | slice(10 ** 8) | list }}", "slice given 100000000"),
        ('{{ "x".ljust(100000000) }}', "ljust given 100000000"),
    ],
)
def test_constant_bombs_are_refused_at_lint_time_on_their_line(source: str, says: str) -> None:
    with pytest.raises(ValueError, match="template line 2: ") as caught:
        check_template("Alert:\n" + source)
    assert says in str(caught.value)
    # And at render time, should one get past lint (nothing is built first).
    started = time.thread_time()
    with pytest.raises(TemplateTooLarge, match=says.split(" is ")[0]):
        render(source, {})
    assert time.thread_time() - started < 1


@pytest.mark.parametrize(
    "source",
    [
        "{{ labels.pod * 100000000 }}",
        "{{ labels.pod * (labels.n | int) }}",
        "{{ labels.pod | center(labels.n | int) }}",
        "{{ (labels.n | int) ** (labels.n | int) }}",
    ],
)
def test_bombs_fed_by_the_alert_are_refused_when_rendered(source: str) -> None:
    check_template(source)  # nothing to see without an alert
    started = time.thread_time()
    with pytest.raises(TemplateTooLarge):
        render(source, {"labels": {"pod": "web-0", "n": "100000000"}})
    assert time.thread_time() - started < 1


def test_the_output_stops_at_the_bound() -> None:
    loop = '{% for i in range(1000) %}{{ "y" * 100 }}{% endfor %}'
    check_template(loop)
    with pytest.raises(TemplateTooLarge, match=f"renders more than {MAX_RENDERED} characters"):
        render(loop, {})
    # Each piece within the bounds, the whole past the output bound.
    wide = '{{ "{:>60000}".format("x") }}{{ "{:>60000}".format("y") }}'
    with pytest.raises(TemplateTooLarge, match=r"renders more than|steps of work"):
        render(wide, {})


def test_ordinary_templates_are_unaffected() -> None:
    source = (
        '{{ "-" * 20 }} {{ 2 ** 10 }} {{ labels.pod | center(11) }} '
        "{{ [1, 2, 3, 4] | batch(2) | list }} {{ 3 * 4 }} {{ 1.5 * 2 }}"
    )
    assert check_template(source) == source
    assert render(source, {"labels": {"pod": "web"}}) == (
        "-------------------- 1024     web     [[1, 2], [3, 4]] 12 3.0"
    )
    exactly = '{{ "x" * ' + str(MAX_RENDERED) + " }}"
    assert len(render(exactly, {})) == MAX_RENDERED


def test_a_bound_that_is_hit_fails_the_step_with_its_reason() -> None:
    # An ActionError: the step is recorded failed with the message, the worker is not troubled.
    assert issubclass(TemplateTooLarge, ActionError)


def test_lint_refuses_a_notification_bomb_in_a_rule_file() -> None:
    text = """\
rules:
  - name: r
    match: ['alertname="A"']
    target: {kind: Deployment, namespace: shop, name: web}
    steps:
      - action: notify
        params: {channel: oncall, message: '{{ "x" * 100000000 }}'}
"""
    [error] = lint_files({"a.yaml": text}, default_registry(), POLICY)
    assert error.file == "a.yaml"
    assert "template line 1: 1 x 100000000 is more than 65536 characters" in error.message
