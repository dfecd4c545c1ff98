"""String formatting in templates is bounded like ``*`` (remediations/template_formats.py): a
width or precision builds its characters in one call, before any bound could count them.
``"%0200000000d" % 1`` passed lint and, rendered, built 200 MB and held the event loop for 4 s
(``"%.200000000f" % 1.5`` for 6 s) before the output bound refused the result. Pure."""

from __future__ import annotations

import time

import pytest

from remediations.templates import TemplateTooLarge, check_template, render

WIDE = "200000000"


@pytest.mark.parametrize(
    "source",
    [
        f'{{{{ "%0{WIDE}d" % 1 }}}}',
        f'{{{{ "%.{WIDE}f" % 1.5 }}}}',
        f'{{{{ "%0{WIDE}d" | format(1) }}}}',
        f'{{{{ "{{:0{WIDE}d}}".format(1) }}}}',
        f'{{{{ "{{x:>{WIDE}}}".format_map({{"x": 1}}) }}}}',
        '{{ "%60000s%60000s" % ("a", "b") }}',  # the widths add up
    ],
)
def test_a_constant_format_over_the_bound_is_a_rule_error_and_builds_nothing(source: str) -> None:
    with pytest.raises(ValueError, match=r"template line 2: .*widths and precisions of"):
        check_template("Alert:\n" + source)
    started = time.thread_time()
    with pytest.raises(TemplateTooLarge, match="widths and precisions of"):
        render(source, {})
    assert time.thread_time() - started < 0.5


@pytest.mark.parametrize(
    "source",
    [
        '{{ ("%0" ~ labels.n ~ "d") % 1 }}',
        '{{ "%*s" % (labels.n | int, "x") }}',
        '{{ "%.*f" % (labels.n | int, 1.5) }}',
        '{{ ("%0" ~ labels.n ~ "d") | format(1) }}',
        '{{ ("{:" ~ labels.n ~ "}").format("x") }}',
        '{{ "{:{w}}".format_map({"w": labels.n | int}) }}',
        # A `*` or a nested field takes its own argument, wherever it stands.
        '{{ "%d%*d" % (7, labels.n | int, 1) }}',
        '{{ "{a}{x:{w}}".format_map({"a": 7, "x": "x", "w": labels.n | int}) }}',
    ],
)
def test_a_format_the_alert_widens_fails_the_render_before_building_it(source: str) -> None:
    check_template(source)  # nothing to see without an alert
    started = time.thread_time()
    with pytest.raises(TemplateTooLarge, match="widths and precisions of"):
        render(source, {"labels": {"n": WIDE}})
    assert time.thread_time() - started < 0.5


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ('{{ "%-8s|%5.1f%%" % (labels.pod, 99.44) }}', "web-0   | 99.4%"),
        ('{{ "%(p)s" % {"p": labels.pod} }}', "web-0"),
        ('{{ "%s restarts" | format(labels.n) }}', "3 restarts"),
        ('{{ "{:>7}|{:03d}".format(labels.pod, labels.n | int) }}', "  web-0|003"),
        ("{{ 10 % 3 }}", "1"),
        # Only what a `*` or a nested field takes is a width: the values formatted are not
        # (their sum was counted, and "%*d" % (5, 100000) refused as 100005 characters).
        ('{{ "%*d" % (5, 100000) }}', "100000"),
        ('{{ "%*d %d" | format(5, 40000, 40000) }}', "40000 40000"),
        ('{{ "{:{w}} {a} {b}".format(1, w=3, a=40000, b=40000) }}', "  1 40000 40000"),
        ('{{ "{:{}} {} {}".format(1, 3, 40000, 40000) }}', "  1 40000 40000"),
    ],
)
def test_ordinary_formatting_is_unaffected(source: str, rendered: str) -> None:
    check_template(source)
    assert render(source, {"labels": {"pod": "web-0", "n": "3"}}) == rendered
