"""Rule target templates (``{{ labels.NAME }}``) and target validation. Pure: no I/O.

A label value comes from whoever can push an alert, so a rendered target is only trusted after
it has passed DNS-1123 validation and the namespace policy: no value can point an action at a
namespace the operator did not allow, or smuggle a path or a second template through.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from receiver.model import NamespacePolicy, Target

__all__ = [
    "TargetError",
    "Template",
    "TemplateError",
    "compile_template",
    "render_target",
    "validate_target",
]

_ROOTS = ("labels", "annotations")
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL_MAX = 63
_DNS_SUBDOMAIN_MAX = 253
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_REPR_MAX = 80


class TemplateError(ValueError):
    """A template that does not parse, or that references a label the alert does not carry."""


class TargetError(ValueError):
    """A rendered target that must not be acted on. Names the field and the rejected value."""

    def __init__(self, field: str, value: str, reason: str) -> None:
        shown = repr(value)
        if len(shown) > _REPR_MAX:
            shown = shown[: _REPR_MAX - 3] + "..."
        super().__init__(f"{field} {shown} {reason}")
        self.field = field
        self.value = value
        self.reason = reason


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
        """Substitute each reference once. Values are never parsed again as template text."""
        sources = {"labels": labels, "annotations": annotations}
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            root, name = part
            value = sources[root].get(name, "")
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
        end = text.find("}}", i + 2)
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


def _reference(expression: str, text: str) -> Reference:
    where = f"in template {text!r}"
    if not expression:
        raise TemplateError(f"empty expression '{{{{ }}}}' {where}")
    if "|" in expression:
        raise TemplateError(f"filters are not supported: {expression!r} {where}")
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
    if _NAME.fullmatch(name) is None:
        raise TemplateError(f"invalid {root[:-1]} name {name!r} in {expression!r} {where}")
    return (root, name)


def validate_target(
    target: Target, policy: NamespacePolicy, kinds: frozenset[str] | None = None
) -> None:
    """Raise TargetError unless the target is well-formed, of an allowed kind, and permitted."""
    if _KIND.fullmatch(target.kind) is None:
        raise TargetError("kind", target.kind, "is not a Kubernetes kind name")
    if kinds is not None and target.kind not in kinds:
        raise TargetError("kind", target.kind, f"is not one of {', '.join(sorted(kinds))}")
    namespace = target.namespace
    # fullmatch, not `$`: `$` would let a trailing newline through.
    if len(namespace) > _DNS_LABEL_MAX or _DNS_LABEL.fullmatch(namespace) is None:
        raise TargetError(
            "namespace", namespace, "is not a DNS-1123 label (a-z, 0-9, '-', at most 63)"
        )
    name = target.name
    if len(name) > _DNS_SUBDOMAIN_MAX or _DNS_SUBDOMAIN.fullmatch(name) is None:
        raise TargetError(
            "name", name, "is not a DNS-1123 subdomain (a-z, 0-9, '-', '.', at most 253)"
        )
    if not policy.permits(namespace):
        raise TargetError(
            "namespace",
            namespace,
            f"is not allowed by policy (allow={list(policy.allow)}, deny={list(policy.deny)})",
        )


def render_target(
    kind: str,
    namespace_tpl: Template,
    name_tpl: Template,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    policy: NamespacePolicy,
    kinds: frozenset[str] | None = None,
) -> Target:
    """Render and validate. Raises TemplateError (missing label) or TargetError (bad value)."""
    target = Target(
        kind=kind,
        namespace=namespace_tpl.render(labels, annotations),
        name=name_tpl.render(labels, annotations),
    )
    validate_target(target, policy, kinds)
    return target
