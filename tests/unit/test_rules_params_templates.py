"""Params that are taken as written, and params too deeply nested to be stored, refused at
their line when the rules load.

Only ``notify``'s ``message`` and ``title`` and ``http.call``'s ``body`` are templates over the
alert. A ``{{ labels.x }}`` anywhere else was loaded without a word and used as it is: a
``set_env`` step set the container's variable to the braces themselves, and an
``exclude_applications`` of ``["{{ labels.app }}"]`` replaced the default list that spares
``pg_dump`` and ``pg_basebackup``.
"""

from __future__ import annotations

from receiver.rules.compile import lint_files
from receiver.rules.errors import RuleError
from remediations.registry import default_registry
from tests.support.rules import POLICY, TARGET, one_rule

_NOT_A_TEMPLATE = (
    "is taken as written, not as a template: only notify's message and title and "
    "http.call's body render the alert's labels and annotations; write the value itself"
)


def test_a_template_in_set_env_value_is_an_error_at_its_line() -> None:
    text = one_rule(
        TARGET + "steps:\n  - action: kubernetes.set_env\n"
        '    params: {container: app, name: DB_POOL_SIZE, value: "{{ labels.pool }}"}\n'
    )
    assert lint_files({"a.yaml": text}, default_registry(), POLICY) == [
        RuleError(
            "a.yaml",
            7,
            "rule 'r': invalid params for kubernetes.set_env: value: '{{ labels.pool }}' "
            + _NOT_A_TEMPLATE,
        )
    ]


def test_a_template_in_a_postgres_list_is_an_error_at_its_item() -> None:
    text = one_rule(
        'target: {kind: PostgresDatabase, name: "{{ labels.db }}"}\n'
        "steps:\n  - action: postgres.terminate_idle\n    params:\n"
        "      idle_for: 5m\n      roles: [app]\n"
        "      exclude_applications:\n        - pg_dump\n        - '{% if 1 %}x{% endif %}'\n"
    )
    assert lint_files({"a.yaml": text}, default_registry(), POLICY) == [
        RuleError(
            "a.yaml",
            12,
            "rule 'r': invalid params for postgres.terminate_idle: exclude_applications[1]: "
            "'{% if 1 %}x{% endif %}' " + _NOT_A_TEMPLATE,
        )
    ]


def test_templates_where_they_render_and_braces_in_a_literal_value_still_load() -> None:
    text = one_rule(
        TARGET + "steps:\n  - action: kubernetes.set_env\n"
        '    params: {container: app, name: JSON, value: \'{"a": {"b": 1}}\'}\n'
        "  - action: notify\n"
        "    params:\n      channel: oncall\n      message: '{{ labels.x }}'\n"
        "      title: '{% if 1 %}t{% endif %}'\n"
    )
    assert lint_files({"a.yaml": text}, default_registry(), POLICY) == []


def test_an_http_body_nested_past_the_bound_is_an_error_at_its_step_not_a_crash() -> None:
    # 300 levels: the loader failed with "could not load the rules (ValueError: Maximum
    # serialization depth exceeded); please report this", naming no file or line.
    deep = "[" * 300 + "]" * 300
    text = one_rule(
        "target: {kind: HttpEndpoint, name: hook}\n"
        f"steps:\n  - action: http.call\n    params: {{body: {{a: {deep}}}}}\n"
    )
    errors = lint_files({"a.yaml": text}, default_registry(), POLICY)
    assert [(e.file, e.line) for e in errors] == [("a.yaml", 7)], errors
    assert errors[0].message == (
        "rule 'r': invalid params for http.call: body: its objects and lists are nested 301 "
        "levels deep; at most 64"
    )
    fine = "[" * 63 + "]" * 63
    ok = text.replace(deep, fine)
    assert lint_files({"a.yaml": ok}, default_registry(), POLICY) == []
