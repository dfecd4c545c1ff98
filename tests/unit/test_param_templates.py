"""Templates in rule params (remediations/templates.py): what they may read, and how they fail."""

from __future__ import annotations

import pytest

from remediations.base import ActionContext, Clients
from remediations.targets import Target
from remediations.template_names import ROOTS
from remediations.templates import check_template, render, template_values


def test_a_label_with_dots_is_read_by_subscript() -> None:
    source = 'deploy {{ labels["k8s.deployment.name"] }} in {{ labels.namespace }}'
    assert check_template(source) == source
    labels = {"k8s.deployment.name": "cart", "namespace": "shop"}
    assert render(source, {"labels": labels}) == "deploy cart in shop"


@pytest.mark.parametrize(
    ("source", "written"),
    [
        ("{{ labels.k8s.deployment.name }}", 'labels["k8s.deployment.name"]'),
        ("x {% if annotations.runbook.url %}y{% endif %}", 'annotations["runbook.url"]'),
    ],
)
def test_dotted_attribute_chains_on_labels_are_refused_at_lint_time(
    source: str, written: str
) -> None:
    # Jinja would render these as "" for a label named with dots: refuse instead of going quiet.
    with pytest.raises(ValueError, match="reads the dots as nested lookups") as info:
        check_template(source)
    assert written in str(info.value)


def test_other_chains_are_left_alone() -> None:
    source = "{{ target.key }} {{ alert.status }} {{ run.id }}"
    assert check_template(source) == source


@pytest.mark.parametrize(
    ("source", "line", "written"),
    [
        ("dash=[{{ labels.app-name }}]", 1, 'labels["app-name"]'),
        ("{{ annotations.runbook-url-v2 }}", 1, 'annotations["runbook-url-v2"]'),
        ("a\n{% if labels.k8s.app-name %}y{% endif %}", 2, 'labels["k8s.app-name"]'),
    ],
)
def test_a_label_name_with_a_dash_is_refused_with_the_subscript_to_write(
    source: str, line: int, written: str
) -> None:
    # Jinja reads labels.app-name as labels.app - name: an UndefinedError on every alert.
    with pytest.raises(ValueError, match="minus") as info:
        check_template(source)
    message = str(info.value)
    assert message.startswith(f"template line {line}: ")
    assert "minus" in message
    assert f"write {written}" in message


def test_arithmetic_on_a_label_is_not_taken_for_a_dash() -> None:
    source = "{{ labels.count | int - 1 }} {% set n = 2 %}{{ run.id }}"
    assert check_template(source) == source


@pytest.mark.parametrize(
    ("source", "name", "hint"),
    [
        ("typo=[{{ lables.namespace }}]", "lables", " (did you mean 'labels'?)"),
        (
            "{{ target.key }}\n{{ annotation.summary }}",
            "annotation",
            " (did you mean 'annotations'?)",
        ),
        ("{% for k in labels %}{{ k }}{% endfor %}{{ k }}", "k", ""),
        ("{{ severity }}", "severity", ""),
    ],
)
def test_a_name_a_template_is_not_given_is_refused(source: str, name: str, hint: str) -> None:
    # It would render as "" on every alert, without a word.
    with pytest.raises(ValueError, match="unknown name") as info:
        check_template(source)
    line = source[: source.index(name)].count("\n") + 1
    assert str(info.value) == (
        f"template line {line}: unknown name {name!r}{hint}; a template reads labels, "
        "annotations, alert, target, run, rule, and names it sets itself (it would render as "
        "an empty string)"
    )


@pytest.mark.parametrize(
    "source",
    [
        "{% set who = labels.team | default('ops') %}{{ who }}",
        "{% for k, v in labels | dictsort %}{{ k }}={{ v }} {{ loop.index }}{% endfor %}",
        "{% macro row(x) %}[{{ x }}]{% endmacro %}{{ row(alert.status) }}",
        "{% with a = run.dry_run %}{{ a }}{% endwith %} {{ rule }} {{ range(3) | join(',') }}",
        '{{ labels["app-name"] }} {{ annotations.summary }} {{ target.namespace }}',
    ],
)
def test_names_a_template_binds_itself_and_the_given_roots_are_accepted(source: str) -> None:
    assert check_template(source) == source


def test_the_roots_checked_are_the_values_a_template_is_rendered_with() -> None:
    ctx = ActionContext(run_id="r", dry_run=True, clients=Clients(), rule="x")
    values = template_values(ctx, Target("Deployment", "shop", "web"))
    assert tuple(values) == ROOTS
