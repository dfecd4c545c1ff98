"""Target templates and validation: no label value may aim an action outside the policy."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from receiver.model import NamespacePolicy, Target
from receiver.templating import (
    TargetError,
    Template,
    TemplateError,
    check_template_text,
    compile_template,
    render_target,
    validate_target,
)

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
POLICY = NamespacePolicy()  # default: deny the kube-* namespaces
NS = compile_template("{{ labels.namespace }}")
NAME = compile_template("{{ labels.deployment }}")


def _render(namespace: str, name: str = "api", policy: NamespacePolicy = POLICY) -> Target:
    labels = {"namespace": namespace, "deployment": name}
    return render_target("Deployment", NS, NAME, labels, {}, policy)


class TestCompile:
    @pytest.mark.parametrize(
        ("text", "references"),
        [
            ("{{ labels.namespace }}", {("labels", "namespace")}),
            ("{{labels.namespace}}", {("labels", "namespace")}),
            ("{{   labels.app\t}}-worker", {("labels", "app")}),
            ("{{ annotations.target_ns }}", {("annotations", "target_ns")}),
            ("{{ labels.a }}.{{ labels.b }}", {("labels", "a"), ("labels", "b")}),
            # names outside [a-zA-Z_][a-zA-Z0-9_]* (Alertmanager >= 0.27, OpenTelemetry)
            ("{{ labels.k8s.deployment.name }}", {("labels", "k8s.deployment.name")}),
            ('{{ labels["k8s.deployment.name"] }}', {("labels", "k8s.deployment.name")}),
            ("{{labels['app.kubernetes.io/name']}}", {("labels", "app.kubernetes.io/name")}),
            ('{{ annotations [ "a b" ] }}-x', {("annotations", "a b")}),
            ('{{ labels["say \\"hi\\""] }}', {("labels", 'say "hi"')}),
            ("{{ labels['it\\'s'] }}", {("labels", "it's")}),
            ('{{ labels["back\\\\slash"] }}', {("labels", "back\\slash")}),
            ('{{ labels["a}}b"] }}', {("labels", "a}}b")}),
            ('{{ labels["名前"] }}', {("labels", "名前")}),
            ("static-name", set()),
            ("", set()),
        ],
    )
    def test_valid(self, text: str, references: set[tuple[str, str]]) -> None:
        template = compile_template(text)
        assert template.source == text
        assert template.references == frozenset(references)

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("{{ env.HOME }}", "unknown root 'env'"),
            ("{{ label.app }}", "unknown root 'label'"),
            ("{{ labels }}", "missing name"),
            ("{{ labels. }}", "missing name"),
            ("{{ }}", "empty expression"),
            ("{{}}", "empty expression"),
            ("{{ labels.app", "unclosed"),
            ("{{ labels.app }", "unclosed"),
            ("x-{{ labels.a {{ labels.b }}", "unclosed"),
            ("labels.app }}", "unexpected '}}'"),
            ("{{ labels.app | lower }}", "filters are not supported"),
            ("{{ .Labels.app }}", "Go template syntax"),
            ("{{ labels.app-name }}", "invalid label name"),
            ("{{ labels.1x }}", "invalid label name"),
            ("{{ labels.a..b }}", "invalid label name"),
            ("{{ labels.a. }}", "invalid label name"),
            ("{{ labels.app/name }}", 'write labels["app/name"]'),
            ("{{ labels[app] }}", "with the name in quotes"),
            ('{{ labels["app"  }}', "with the name in quotes"),
            ('{{ labels[""] }}', "empty label name"),
            ('{{ labels["a\\nb"] }}', "unknown escape"),
            ('{{ env["HOME"] }}', "unknown root 'env'"),
            ('{{ labels["a"]["b"] }}', "with the name in quotes"),
            ('{{ labels["unclosed }}', "unclosed"),
            ("{{ labels.app + 1 }}", "invalid label name"),
        ],
    )
    def test_invalid_names_the_problem(self, text: str, fragment: str) -> None:
        with pytest.raises(TemplateError, match=re.escape(fragment)):
            compile_template(text)


class TestRender:
    def test_literal_text_around_references(self) -> None:
        template = compile_template("{{ labels.app }}-worker")
        assert template.render({"app": "billing"}, {}) == "billing-worker"

    def test_annotations(self) -> None:
        template = compile_template("{{ annotations.ns }}")
        assert template.render({"ns": "from-label"}, {"ns": "from-annotation"}) == "from-annotation"

    @pytest.mark.parametrize("labels", [{}, {"app": ""}, {"other": "x"}])
    def test_missing_or_empty_label_is_named(self, labels: dict[str, str]) -> None:
        with pytest.raises(TemplateError, match=r"label 'app'.*missing or empty"):
            compile_template("{{ labels.app }}-worker").render(labels, {})

    def test_missing_annotation_is_named(self) -> None:
        with pytest.raises(TemplateError, match="annotation 'ns'"):
            compile_template("{{ annotations.ns }}").render({"ns": "x"}, {})

    def test_names_outside_the_classic_charset(self) -> None:
        labels = {"k8s.namespace.name": "shop", "k8s.deployment.name": "cart"}
        ns = compile_template("{{ labels.k8s.namespace.name }}")
        name = compile_template(
            '{{ labels["k8s.deployment.name"] }}-{{ labels["k8s.namespace.name"] }}'
        )
        assert ns.render(labels, {}) == "shop"
        assert name.render(labels, {}) == "cart-shop"
        with pytest.raises(TemplateError, match=re.escape("label 'k8s.deployment.name'")):
            name.render({"k8s_deployment_name": "cart", "k8s.namespace.name": "shop"}, {})

    def test_quoted_names_render_values_once_and_targets_are_validated(self) -> None:
        ns = compile_template('{{ labels["k8s.namespace.name"] }}')
        name = compile_template('{{ labels["k8s.deployment.name"] }}')
        labels = {"k8s.namespace.name": "kube-system", "k8s.deployment.name": "cart"}
        with pytest.raises(TargetError, match="namespace"):
            render_target("Deployment", ns, name, labels, {}, POLICY)
        labels = {"k8s.namespace.name": "shop", "k8s.deployment.name": '{{ labels["x"] }}'}
        with pytest.raises(TargetError, match="name"):
            render_target("Deployment", ns, name, labels | {"x": "ok"}, {}, POLICY)

    def test_values_are_not_rendered_again(self) -> None:
        template = compile_template("{{ labels.a }}")
        assert template.render({"a": "{{ labels.b }}", "b": "kube-system"}, {}) == "{{ labels.b }}"


class TestValidation:
    @pytest.mark.parametrize(
        ("namespace", "name"),
        [
            ("prod", "api"),
            ("a", "b"),
            ("team-1", "api-v2.canary"),
            ("0", "0"),
            ("n" * 63, "x" * 253),
            ("prod", ".".join(["a" * 63] * 3) + "." + "b" * 61),
        ],
    )
    def test_accepted(self, namespace: str, name: str) -> None:
        assert _render(namespace, name) == Target("Deployment", namespace, name)

    @pytest.mark.parametrize(
        ("namespace", "field"),
        [
            ("prod/../kube-system", "namespace"),
            ("kube-system", "namespace"),
            ("kube-public", "namespace"),
            ("Prod", "namespace"),
            ("a b", "namespace"),
            ("x\n", "namespace"),
            ("\nx", "namespace"),
            ("-bad", "namespace"),
            ("bad-", "namespace"),
            ("n" * 64, "namespace"),
            ("prod.eu", "namespace"),  # a namespace is a label, not a subdomain
            ("{{ labels.x }}", "namespace"),
            ("kube\u2010system", "namespace"),  # unicode hyphen
            ("pr\u043ed", "namespace"),  # Cyrillic o
            ("prod\u200b", "namespace"),  # zero-width space
            ("ｐｒｏｄ", "namespace"),  # noqa: RUF001 (the point of the test)
            ("prod\x00", "namespace"),
            ("*", "namespace"),
        ],
    )
    def test_hostile_namespace_rejected(self, namespace: str, field: str) -> None:
        with pytest.raises(TargetError) as caught:
            _render(namespace)
        assert caught.value.field == field
        assert caught.value.value == namespace
        assert repr(namespace)[:20] in str(caught.value)

    @pytest.mark.parametrize(
        "name",
        ["../secrets", "api/status", "API", "api..v2", ".api", "api.", "a" * 254, "api\n", "a_b"],
    )
    def test_hostile_name_rejected(self, name: str) -> None:
        with pytest.raises(TargetError) as caught:
            _render("prod", name)
        assert caught.value.field == "name"

    def test_empty_value_is_a_template_error(self) -> None:
        with pytest.raises(TemplateError):
            _render("")

    def test_empty_rendered_text_is_a_target_error(self) -> None:
        with pytest.raises(TargetError, match="namespace ''"):
            render_target("Deployment", compile_template(""), NAME, {"deployment": "x"}, {}, POLICY)

    def test_policy_message_names_the_namespace(self) -> None:
        with pytest.raises(TargetError, match=r"namespace 'kube-system' is not allowed by policy"):
            _render("kube-system")

    def test_allow_list(self) -> None:
        policy = NamespacePolicy(allow=("prod", "stage"))
        assert _render("prod", policy=policy).namespace == "prod"
        with pytest.raises(TargetError, match="not allowed by policy"):
            _render("dev", policy=policy)
        # The deny list wins even when a namespace is also allowed.
        both = NamespacePolicy(allow=("kube-system",))
        with pytest.raises(TargetError, match="not allowed by policy"):
            _render("kube-system", policy=both)

    def test_kinds(self) -> None:
        kinds = frozenset({"Deployment", "StatefulSet"})
        validate_target(Target("StatefulSet", "prod", "db"), POLICY, kinds)
        with pytest.raises(TargetError, match="kind 'Pod' is not one of Deployment, StatefulSet"):
            validate_target(Target("Pod", "prod", "db"), POLICY, kinds)
        with pytest.raises(TargetError) as caught:
            validate_target(Target("", "prod", "db"), POLICY)
        assert caught.value.field == "kind"

    def test_unknown_kind_is_refused_naming_the_known_ones(self) -> None:
        with pytest.raises(TargetError, match="kind 'CronJob' is not a known target kind") as c:
            validate_target(Target("CronJob", "prod", "nightly"), POLICY)
        assert c.value.field == "kind"

    def test_policy_applies_only_to_namespaced_kinds(self) -> None:
        deny_all = NamespacePolicy(allow=("nowhere",))
        validate_target(Target("PostgresDatabase", "", "orders"), deny_all)
        validate_target(Target("RedisQueue", "", "jobs/emails"), deny_all)
        with pytest.raises(TargetError, match="not allowed by policy"):
            validate_target(Target("Pod", "prod", "web-0"), deny_all)

    def test_kinds_without_a_namespace_refuse_one(self) -> None:
        with pytest.raises(TargetError) as caught:
            validate_target(Target("HttpEndpoint", "prod", "payments"), POLICY)
        assert caught.value.field == "namespace"

    def test_long_values_are_truncated_in_the_message(self) -> None:
        with pytest.raises(TargetError) as caught:
            _render("x" * 5000 + "/")
        assert len(str(caught.value)) < 300
        assert len(caught.value.value) == 5001


TEMPLATES = st.sampled_from(
    [
        "{{ labels.namespace }}",
        "{{ labels.namespace }}-x",
        "x{{ labels.namespace }}",
        "{{ labels.namespace }}{{ labels.other }}",
        "{{ annotations.namespace }}",
    ]
)
HOSTILE_TEXT = st.one_of(
    st.text(),
    st.text(alphabet="abkube-system./{} \n\t\u0430\u2010", max_size=20),
    st.sampled_from(["kube-system", "kube-public", "kube-node-lease", "prod", "prod/../x"]),
)


@given(
    ns_template=TEMPLATES,
    name_template=TEMPLATES,
    namespace=HOSTILE_TEXT,
    other=HOSTILE_TEXT,
    allow=st.sampled_from([(), ("prod", "kube-system", "k")]),
)
def test_no_value_steers_outside_policy(
    ns_template: str, name_template: str, namespace: str, other: str, allow: tuple[str, ...]
) -> None:
    policy = NamespacePolicy(allow=allow)
    values = {"namespace": namespace, "other": other}
    try:
        target = render_target(
            "Deployment",
            compile_template(ns_template),
            compile_template(name_template),
            values,
            values,
            policy,
        )
    except (TargetError, TemplateError):
        return
    assert DNS_LABEL.fullmatch(target.namespace)
    assert len(target.namespace) <= 63
    assert DNS_SUBDOMAIN.fullmatch(target.name)
    assert len(target.name) <= 253
    assert target.namespace not in policy.deny
    assert not policy.allow or target.namespace in policy.allow
    assert policy.permits(target.namespace)


@given(value=st.text(), template=TEMPLATES)
def test_rendering_is_single_pass(value: str, template: str) -> None:
    compiled: Template = compile_template(template)
    values = {"namespace": value, "other": "{{ labels.namespace }}"}
    try:
        rendered = compiled.render(values, values)
    except TemplateError:
        assert value == ""
        return
    assert rendered.count(value) >= 1
    if "other" in template:
        assert rendered.endswith("{{ labels.namespace }}")


# -- literal text around references ------------------------------------------------------

_PIECE = st.sampled_from(["a", "z9", "-", ".", "/", "_", "x-y", "{{ labels.v }}", "{{ labels.w }}"])
_VALUE = st.text(alphabet="ab9-.", min_size=1, max_size=6)


@given(st.lists(_PIECE, min_size=1, max_size=6).map("".join), _VALUE, _VALUE)
def test_a_template_refused_for_its_text_is_invalid_whatever_the_labels_hold(
    text: str, v: str, w: str
) -> None:
    """check_template_text stands "a" in for each reference: when it refuses a name or a
    namespace, no value (made of characters a DNS-1123 name may hold, or any other) renders
    a valid one."""
    template = compile_template(text)
    for namespace, name in ((template, NAME), (NS, template)):
        try:
            check_template_text("Deployment", namespace, name)
        except TargetError:
            labels = {"v": v, "w": w, "namespace": "shop", "deployment": "api"}
            with pytest.raises((TargetError, TemplateError)):
                render_target("Deployment", namespace, name, labels, {}, NamespacePolicy())


def test_only_kubernetes_targets_are_checked_for_their_text() -> None:
    with pytest.raises(TargetError, match=r"name 'web_<label value>' is not a DNS-1123 subdomain"):
        check_template_text("Pod", NS, compile_template("web_{{ labels.x }}"))
    # A RedisQueue value brings its own '/', so its text alone decides nothing.
    check_template_text("RedisQueue", compile_template(""), compile_template("{{ labels.q }}-dlq"))
