"""Templates in rule params (remediations/templates.py): what they may read, and how they fail."""

from __future__ import annotations

import pytest

from remediations.templates import check_template, render


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
