"""The work of one template render is bounded (remediations/template_work.py): loops, recursive
loops, macros calling themselves and filters over large values draw from one budget per render
and fail quickly with the bound they passed, naming the template; lint refuses loops over
constants nested past the budget. Ordinary templates are unaffected."""

from __future__ import annotations

import re
import time

import pytest

from receiver.rules.compile import lint_files
from remediations import template_work
from remediations.registry import default_registry
from remediations.template_work import Budget, counted, rendering
from remediations.templates import (
    MAX_DEPTH,
    MAX_RENDERED,
    MAX_SECONDS,
    MAX_WORK,
    TemplateFailed,
    TemplateTooLarge,
    check_template,
    render,
)
from tests.support.rules import POLICY

ALERT = {"labels": {"n": "60000", "small": "3", "pod": "web-0"}}
STEPS = f"more than {MAX_WORK} steps of work"
DEEP = f"nests calls more than {MAX_DEPTH} deep"
# Work heavier per step than an empty loop item may pass the CPU-time net first, depending on
# the machine: either bound is the right answer.
WORK = re.compile(f"more than ({MAX_WORK} steps of work|{MAX_SECONDS} s of CPU time)")


def refused(source: str, says: str | re.Pattern[str]) -> str:
    """Render ``source``: it must fail with ``says`` within a fraction of a second of CPU (the
    thread's CPU time, not the wall clock: a loaded machine stretched a 0.3 s refusal past 1 s
    of wall time, and a bound on the wall clock is a timed test)."""
    started = time.thread_time()
    with pytest.raises(TemplateTooLarge) as caught:
        render(source, ALERT, name="body.c")
    assert time.thread_time() - started < 1
    message = caught.value.message
    assert re.search(says, message) if isinstance(says, re.Pattern) else says in message, message
    return message


@pytest.mark.parametrize(
    "source",
    [
        # Nested loops over an alert's number: 3.6 billion iterations, printing nothing, with
        # nothing but the loops' items to count.
        "{% set r = range(labels.n|int) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}",
        "{% for i in range(labels.n|int) %}{% for j in range(labels.n|int) %}"
        "{% endfor %}{% endfor %}x",
        # The same with the loop variable used (the loop goes through LoopContext).
        "{% for i in range(labels.n|int) %}{% for j in range(labels.n|int) %}"
        "{% if loop.last %}.{% endif %}{% endfor %}{% endfor %}",
        # A loop over a filter's output, and filters inside a loop.
        "{% for i in range(labels.n|int)|list %}{% for j in range(9)|reverse %}"
        "{% endfor %}{% endfor %}",
        "{% for i in range(labels.n|int) %}{{ range(60000)|sort|last }}{% endfor %}",
    ],
)
def test_loops_fed_by_the_alert_stop_at_the_budget(source: str) -> None:
    check_template(source)  # lint cannot see the alert's number
    message = refused(source, WORK)
    assert message.startswith("template body.c '{% ")


@pytest.mark.parametrize(
    ("source", "says"),
    [
        # Recursive loops: each loop(...) is a call one level deeper...
        ("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", DEEP),
        # ...and each of its items is counted: two children a level, 30 levels.
        (
            "{% for d in [30] recursive %}{% if d %}{{ loop([d - 1, d - 1]) }}{% endif %}"
            "{% endfor %}",
            WORK,
        ),
        # Macros calling themselves: forever, and twice a level, 40 levels.
        ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", DEEP),
        (
            "{% macro m(d) %}{% if d %}{{ m(d - 1) }}{{ m(d - 1) }}{% endif %}{% endmacro %}"
            "{{ m(40) }}",
            WORK,
        ),
        # caller() re-entering the macro that called it.
        (
            "{% macro m() %}{% call m() %}{{ caller() }}{% endcall %}{% endmacro %}{{ m() }}",
            DEEP,
        ),
    ],
)
def test_recursion_stops_at_its_depth_or_the_budget(
    source: str, says: str | re.Pattern[str]
) -> None:
    check_template(source)
    refused(source, says)


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("{% for i in range(20) %}{{ range(60000)|map('string')|join }}{% endfor %}", WORK),
        ("{{ range(60000)|sort|unique|list|length }}", WORK),
        ("{% for i in range(9) %}{{ range(60000)|select('odd')|list|length }}{% endfor %}", WORK),
        ("{% for i in range(60000) %}{{ (labels.pod * 6000) | upper | length }}{% endfor %}", WORK),
        # A list holding a big list is as big as what it holds.
        ("{{ ([range(60000)] * 60000) | map('list') | map('length') | sum }}", "60000 x 60000"),
        ("{{ [[1] * 60000] * 60000 }}", "60000 x 60000"),
        # Doubling a string by + and ~, and capturing a loop's literal text.
        ('{% set a = "x" * 40000 %}{{ (a + a) | length }}', "a sum over 65536"),
        ('{% set a = "x" * 40000 %}{{ (a ~ a) | length }}', "joins 80000 characters"),
        (
            "{% set x %}{% for i in range(60000) %}abcdefghij{% endfor %}{% endset %}",
            "joins 600000 characters",
        ),
        (
            '{% macro m() %}{{ "y" * 60000 }}{% endmacro %}'
            "{% for i in range(60000) %}{% set _ = m() %}{% endfor %}",
            WORK,
        ),
    ],
)
def test_filters_and_builders_over_large_values_cost_what_they_read(
    source: str, says: str | re.Pattern[str]
) -> None:
    refused(source, says)


def test_lipsum_is_not_offered() -> None:
    # lipsum(n) would build n paragraphs before anything counts them.
    with pytest.raises(TemplateFailed, match="UndefinedError: 'lipsum' is undefined"):
        render("{{ lipsum(60000) }}", {})


def test_ordinary_templates_and_loops_within_the_budget_are_unaffected() -> None:
    source = (
        "{% macro row(k, v) %}{{ k }}={{ v|upper }}{% endmacro %}"
        "{% for k, v in labels|dictsort %}{{ row(k, v) }}{% if not loop.last %}, {% endif %}"
        "{% endfor %} {{ 'a' ~ 1 }} {{ [1, 2] + [3] }} {% filter upper %}ok{% endfilter %} "
        "{% for x in [1, [2, [3]]] recursive %}{{ loop(x) if x is iterable else x }}{% endfor %}"
    )
    check_template(source)
    assert render(source, ALERT) == "n=60000, pod=WEB-0, small=3 a1 [1, 2, 3] OK 123"
    # Just under the budget: MAX_WORK - 5000 iterations of an empty loop (and its range calls).
    inside = "{% for i in range(" + str(MAX_WORK // 1000 - 5) + ") %}"
    inside += "{% for j in range(1000) %}{% endfor %}{% endfor %}ok"
    assert render(inside, {}) == "ok"
    exactly = '{{ "x" * ' + str(MAX_RENDERED) + " }}"
    assert len(render(exactly, {})) == MAX_RENDERED


def test_each_render_has_its_own_budget() -> None:
    half = "{% for i in range(2) %}{% for j in range(" + str(MAX_WORK // 3) + ") %}"
    half += "{% endfor %}{% endfor %}ok"
    assert [render(half, {}) for _ in range(3)] == ["ok", "ok", "ok"]


def test_the_cpu_time_bound_is_a_net_under_the_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_work, "MAX_SECONDS", 0.0)
    budget = Budget()
    deadline = time.thread_time() + 0.01
    while time.thread_time() < deadline:  # burn a little CPU: the clock must have moved
        pass
    with pytest.raises(TemplateTooLarge, match=r"more than 0.0 s of CPU time"):
        budget.charge(template_work._CHECK_EVERY, "loop items")


def test_bounded_templates_fail_closed_outside_a_render() -> None:
    with pytest.raises(TemplateTooLarge, match="outside a bounded render"):
        list(counted(range(3)))
    with rendering():
        assert list(counted(range(3))) == [0, 1, 2]


@pytest.mark.parametrize(
    ("source", "runs"),
    [
        (
            "{% for i in range(60000) %}{% for j in range(60000) %}{% endfor %}{% endfor %}",
            3600000000,
        ),
        (
            "{% for i in range(1000)|list %}{% for j in 'abc' * 100 %}{% endfor %}{% endfor %}",
            300000,
        ),
        (
            "{% for i in range(1000) %}{% for k in labels %}{% for j in range(1000) %}"
            "{% endfor %}{% endfor %}{% endfor %}",
            1000000,
        ),
    ],
)
def test_lint_refuses_constant_loops_nested_past_the_budget(source: str, runs: int) -> None:
    with pytest.raises(ValueError, match=f"template line 2: loops nested here run {runs} times"):
        check_template("Alert:\n" + source)


def test_lint_refuses_the_loop_bomb_in_a_rule_file() -> None:
    text = """\
rules:
  - name: loop-sink
    match: ['alertname="LoopMe"']
    target: {kind: HttpEndpoint, name: sink}
    steps:
      - action: http.call
        params:
          body: {c: "{% for i in range(9000) %}{% for j in range(9000) %}{% endfor %}{% endfor %}"}
        approval: never
"""
    [error] = lint_files({"a.yaml": text}, default_registry(), POLICY)
    assert error.file == "a.yaml"
    assert f"more than the {MAX_WORK} steps of work" in error.message


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("{{ 1 // (labels.n | int) }}", "ZeroDivisionError"),
        ("{{ labels.items() | map('x') | list }}", "No filter named 'x'"),
        ("{{ undefined_thing() }}", "UndefinedError"),
    ],
)
def test_a_template_that_raises_over_an_alert_fails_its_step_naming_it(
    source: str, says: str
) -> None:
    # The template's fault, not the action's: a TemplateFailed (an ActionError) naming it.
    with pytest.raises(TemplateFailed) as caught:
        render(source, {"labels": {"n": "0"}}, name="body.x")
    assert "body.x" in caught.value.message
    assert says in caught.value.message
