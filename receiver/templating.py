"""Rule target templates (``{{ labels.NAME }}``) and target validation. Pure: no I/O.

A reference is ``ROOT.NAME`` or ``ROOT["NAME"]`` with ROOT ``labels`` or ``annotations``. NAME
after a dot is a classic name or dotted classic names (``labels.k8s.deployment.name``: labels
are flat, so the dots are part of the name); the quoted form takes any name, e.g. the UTF-8
names Alertmanager >= 0.27 and OpenTelemetry use (``labels["app.kubernetes.io/name"]``), in
double or single quotes with ``\\``, ``\"`` and ``\'`` as escapes.

A label value comes from whoever can push an alert, so a rendered target is only trusted after
it has passed its kind's validation (``remediations.targets``: DNS-1123 names for Kubernetes
kinds) and, for namespaced kinds, the namespace policy: no value can point an action at a
namespace the operator did not allow, or smuggle a path or a second template through.
``TargetError`` is ``remediations.targets.TargetError``, re-exported because this module's
functions raise it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from receiver.model import NamespacePolicy
from remediations.targets import Target, TargetError, target_kind

__all__ = [
    "TargetError",
    "Template",
    "TemplateError",
    "check_template_text",
    "compile_template",
    "render_target",
    "validate_target",
]

_ROOTS = ("labels", "annotations")
_DOTTED = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*(?:\.[a-zA-Z0-9_]+)*")
# ROOT["NAME"] or ROOT['NAME'], backslash escapes inside the quotes.
_INDEXED = re.compile(
    r"""(?P<root>\w+)\s*\[\s*(?P<quoted>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\s*\]""", re.DOTALL
)
_ESCAPES = {"\\": "\\", '"': '"', "'": "'"}


class TemplateError(ValueError):
    """A template that does not parse, or that references a label the alert does not carry."""


Reference = tuple[str, str]  # (root, name), e.g. ("labels", "namespace")


@dataclass(frozen=True, slots=True)
class Template:
    source: str
    # Literal text and references, in order.
    parts: tuple[str | Reference, ...]

    @property
    def references(self) -> frozenset[Reference]:
        return frozenset(part for part in self.parts if isinstance(part, tuple))

    def render(self, labels: Mapping[str, str], annotations: Mapping[str, str]) -> str:
        """Substitute each reference once. Values are never parsed again as template text.
        Raises TemplateError naming a label or annotation that is missing or empty."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            root, name = part
            # ROOT is one of _ROOTS (compile_template refuses any other).
            value = (labels if root == "labels" else annotations).get(name, "")
            if not value:
                singular = root[:-1]
                raise TemplateError(
                    f"{singular} {name!r} used by template {self.source!r} is missing or empty"
                )
            out.append(value)
        return "".join(out)


def compile_template(text: str) -> Template:
    """Parse a target template. Raises TemplateError naming the first problem."""
    parts: list[str | Reference] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        if text.startswith("}}", i):
            raise TemplateError(f"unexpected '}}}}' at offset {i} in template {text!r}")
        if not text.startswith("{{", i):
            literal.append(text[i])
            i += 1
            continue
        end = _closing(text, i + 2)
        if end == -1:
            raise TemplateError(f"unclosed '{{{{' at offset {i} in template {text!r}")
        expression = text[i + 2 : end]
        if "{{" in expression:
            raise TemplateError(f"unclosed '{{{{' at offset {i} in template {text!r}")
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(_reference(expression.strip(), text))
        i = end + 2
    if literal:
        parts.append("".join(literal))
    return Template(source=text, parts=tuple(parts))


def _closing(text: str, start: int) -> int:
    """The offset of the ``}}`` that closes the expression starting at ``start``, or -1.
    A quoted name may hold ``}}``; the scan skips quoted text."""
    i, quote = start, ""
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif text.startswith("}}", i):
            return i
        i += 1
    return -1


def _unquote(quoted: str, where: str) -> str:
    out: list[str] = []
    i = 1
    while i < len(quoted) - 1:
        char = quoted[i]
        if char == "\\":
            escaped = quoted[i + 1]
            if escaped not in _ESCAPES:
                raise TemplateError(f"unknown escape '\\{escaped}' in {quoted} {where}")
            out.append(_ESCAPES[escaped])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _reference(expression: str, text: str) -> Reference:
    where = f"in template {text!r}"
    if not expression:
        raise TemplateError(f"empty expression '{{{{ }}}}' {where}")
    indexed = _INDEXED.fullmatch(expression)
    if indexed is not None:
        root = indexed["root"]
        if root not in _ROOTS:
            raise TemplateError(
                f"unknown root {root!r} in {expression!r}; use labels or annotations {where}"
            )
        name = _unquote(indexed["quoted"], where)
        if not name:
            raise TemplateError(f"empty {root[:-1]} name in {expression!r} {where}")
        return (root, name)
    if "|" in expression:
        raise TemplateError(f"filters are not supported: {expression!r} {where}")
    if "[" in expression:
        raise TemplateError(
            f'{expression!r} is not labels["NAME"] or annotations["NAME"] with the name in '
            f"quotes {where}"
        )
    if expression.startswith("."):
        # Go template habit from Alertmanager notification templates.
        raise TemplateError(
            f"{expression!r} is Go template syntax; write {{{{ labels.NAME }}}} {where}"
        )
    root, dot, name = expression.partition(".")
    if root not in _ROOTS:
        raise TemplateError(
            f"unknown root {root!r} in {expression!r}; use labels or annotations {where}"
        )
    if not dot or not name:
        raise TemplateError(f"missing name after {root!r} in {expression!r} {where}")
    if _DOTTED.fullmatch(name) is None:
        raise TemplateError(
            f"invalid {root[:-1]} name {name!r} in {expression!r}; for a name with other "
            f'characters write {root}["{name}"] {where}'
        )
    return (root, name)


def validate_target(
    target: Target, policy: NamespacePolicy, kinds: frozenset[str] | None = None
) -> None:
    """Raise TargetError unless the target is of a known kind (one of ``kinds`` when given),
    passes that kind's validation, and, for a namespaced kind, is in a namespace the policy
    permits. Kinds that are not namespaced have no namespace for the policy to speak about."""
    if kinds is not None and target.kind not in kinds:
        raise TargetError("kind", target.kind, f"is not one of {', '.join(sorted(kinds))}")
    kind = target_kind(target.kind)
    kind.validate(target)
    if kind.namespaced and not policy.permits(target.namespace):
        raise TargetError(
            "namespace",
            target.namespace,
            f"is not allowed by policy (allow={list(policy.allow)}, deny={list(policy.deny)})",
        )


def check_template_text(kind: str, namespace: Template, name: Template) -> None:
    """Raise TargetError when the literal text of a Kubernetes target's templates makes it
    invalid whatever the labels hold (a '/' or '_', a '-' or '.' at an end); other kinds and
    templates without literal text pass. Each reference stands for "a": a value that makes a
    DNS-1123 name valid is made of the characters such a name may hold, and one letter is the
    shortest and fits anywhere, so text that fails with "a" fails with every value. The
    namespace policy is not applied (a templated namespace is known only at render time)."""
    if not target_kind(kind).namespaced:
        return  # a RedisQueue value can bring its own '/': "a" is no fair stand-in there
    for field, template in (("namespace", namespace), ("name", name)):
        if all(isinstance(part, tuple) for part in template.parts) or not template.references:
            continue
        stand_in = {"namespace": "placeholder", "name": "web", field: _as(template, "a")}
        try:
            target = Target(kind, stand_in["namespace"], stand_in["name"])
            validate_target(target, NamespacePolicy(allow=(), deny=()))
        except TargetError as exc:
            shown = _as(template, "<label value>")
            raise TargetError(exc.field, shown, f"{exc.reason}, whatever the labels hold") from None


def _as(template: Template, value: str) -> str:
    """``template`` with every reference replaced by ``value``."""
    return "".join(part if isinstance(part, str) else value for part in template.parts)


def render_target(
    kind: str,
    namespace_tpl: Template,
    name_tpl: Template,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    policy: NamespacePolicy,
    kinds: frozenset[str] | None = None,
) -> Target:
    """Render and validate. Raises TemplateError (missing label) or TargetError (bad value).

    A target that passed is remembered (``_validated``, by what decides its validation: kind,
    namespace, name, policy, kinds), and the same rendering later takes the remembered one:
    the engine renders each matching rule's target several times per event, and a storm
    repeats a few hundred targets thousands of times. Validation is pure (the kinds and
    their rules are fixed), so the answer is the one ``validate_target`` gives; a refused
    target is never remembered (``lru_cache`` keeps no exception), and is validated (and
    refused) again each time."""
    return _validated(
        kind,
        namespace_tpl.render(labels, annotations),
        name_tpl.render(labels, annotations),
        policy,
        kinds,
    )


@functools.lru_cache(maxsize=4096)
def _validated(
    kind: str, namespace: str, name: str, policy: NamespacePolicy, kinds: frozenset[str] | None
) -> Target:
    """The target, validated (``validate_target``): a pure function, memoised by
    ``render_target``'s callers' arguments; the 4,096 most recent kept."""
    target = Target(kind=kind, namespace=namespace, name=name)
    validate_target(target, policy, kinds)
    return target
