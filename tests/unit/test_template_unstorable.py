"""A template never renders what no record can hold (remediations/templates.py): U+0000, which
PostgreSQL's text and jsonb refuse, and a lone surrogate, which is not UTF-8. What a template
renders is stored (an approval's preview of an http.call body, a notification's text), and a
value the store refuses failed the event on every retry until it was dead, holding back the
other rules' runs of the same alert. A string literal that holds one is refused when the rules
load; one a template builds from the alert (``"%c" | format(n)``) fails the render, naming
the template."""

from __future__ import annotations

import pytest

from remediations.templates import TemplateFailed, check_template, render


@pytest.mark.parametrize(
    ("literal", "says"),
    [
        (r'{{ "\u0000" }}', "U+0000 (NUL)"),
        (r'{{ labels.pod ~ "\x00" }}', "U+0000 (NUL)"),
        (r'{{ labels.pod | replace("a", "\0") }}', "U+0000 (NUL)"),
        (r'{{ "\ud800" }}', "a lone surrogate (U+D800)"),
    ],
)
def test_a_literal_no_record_can_hold_is_refused_at_lint_on_its_line(
    literal: str, says: str
) -> None:
    with pytest.raises(ValueError, match="template line 2: a string literal holds") as caught:
        check_template("Alert:\n" + literal)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("code", "says"),
    [("0", "renders U+0000 (NUL)"), ("55296", "renders a lone surrogate (U+D800)")],
)
def test_a_rendering_no_record_can_hold_fails_naming_the_template(code: str, says: str) -> None:
    source = '{{ "%c" | format(labels.code | int) }}'
    check_template(source)  # nothing lint can see

    with pytest.raises(TemplateFailed, match=r"template body\.note '\{\{ \"%c\"") as caught:
        render(source, {"labels": {"code": code}}, name="body.note")
    assert says in caught.value.message


def test_ordinary_text_and_escapes_render_as_before() -> None:
    source = r'{{ labels.pod }} {{ "tab:\t" }} {{ "\u00e9" }} {{ "%c" | format(65) }}'
    assert check_template(source) == source
    assert render(source, {"labels": {"pod": "web-1"}}) == "web-1 tab:\t \u00e9 A"
