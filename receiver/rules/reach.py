"""A rule whose own match keeps it from ever acting, refused when the rules load. Pure.

Three faults, each claimed only where deciding it is cheap and exact:

- no value of a label passes all of its matchers (``severity="page"`` with
  ``severity="info"``, ``env=~"a|b"`` with ``env!~"a|b"``): the rule never matches;
- the matchers let a label only be empty or absent (``deployment=""``) and the target needs
  it (``{{ labels.deployment }}``): rendering refuses every alert the rule matches
  ("missing or empty");
- every label the target needs is held to a few values by the matchers, and none of them
  makes a valid target (``namespace="kube-system"`` under a policy that denies it,
  ``deployment="web_api"``, which is no DNS-1123 name).

A label's values are known when one of its matchers admits a finite set: ``=`` (one value) or
``=~`` with literal alternatives only (``a|b|``: no other regex metacharacter), which
Alertmanager anchors (``^(?:a|b|)$``), so it admits exactly those. Each of them is then put to
every matcher on that label as Alertmanager would (``Matcher.matches``: RE2, a missing label
read as ""), so the set found is exact. A label with no such matcher (only ``!=``, ``!~`` or a
real regex) is left alone: nothing is claimed about it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from receiver.matchers import Matcher, parse_item
from receiver.model import NamespacePolicy
from receiver.rules.yaml_lines import KeyPath, Located
from receiver.templating import TargetError, Template, TemplateError, validate_target
from remediations.targets import Target, target_kind

__all__ = ["allowed_values", "check_reach"]

# What makes a regex more than literal alternatives, in Go's (RE2's) syntax. "|" is not here:
# it separates the alternatives.
_META = frozenset("\\.+*?()[]{}^$")
# The most label value combinations tried for one field of the target: rules pin one or two
# labels, to a value or a few.
_MAX_COMBINATIONS = 256


def _finite(matcher: Matcher) -> frozenset[str] | None:
    """Every value ``matcher`` admits, when that is a finite set it spells out; else None."""
    if matcher.op == "=":
        return frozenset({matcher.value})
    if matcher.op == "=~" and not _META.intersection(matcher.value):
        return frozenset(matcher.value.split("|"))
    return None


def allowed_values(name: str, matchers: Sequence[Matcher]) -> frozenset[str] | None:
    """The values of label ``name`` that pass all of ``matchers`` (those on ``name``), ``""``
    standing for an absent label; None when no matcher on it admits a finite set (the values
    are then not known, and may be infinitely many)."""
    finite = [values for m in matchers if (values := _finite(m)) is not None]
    if not finite:
        return None
    candidates = frozenset.intersection(*finite)
    return frozenset(v for v in candidates if all(m.matches({name: v}) for m in matchers))


def _listed(matchers: Sequence[Matcher]) -> str:
    return " and ".join(f"'{m}'" for m in matchers)


def check_reach(
    items: Sequence[str],
    kind: str,
    templates: tuple[Template, Template],
    policy: NamespacePolicy,
    path: KeyPath,
    located: Located,
    label: str,
) -> bool:
    """False, with the error added to ``located`` at the ``match`` item (``path`` is the
    rule's ``match``; ``label`` prefixes messages with the rule's name), when the rule's
    ``match`` ``items`` (each already parsed once by the schema) keep its target of ``kind``
    (``templates``: its namespace and name) from ever being acted on under ``policy``, as the
    module says; True otherwise, also when that cannot be told cheaply."""
    on_label: dict[str, list[tuple[int, Matcher]]] = {}
    for index, item in enumerate(items):
        for matcher in parse_item(item).matchers:
            on_label.setdefault(matcher.name, []).append((index, matcher))
    allowed: dict[str, frozenset[str]] = {}
    for name, found in on_label.items():
        values = allowed_values(name, [m for _, m in found])
        if values is None:
            continue
        if not values:
            index = found[-1][0]
            located.add(
                (*path, index),
                f"{label}match[{index}]: no value of label {name!r} passes "
                f"{_listed([m for _, m in found])}: the rule can never match",
            )
            return False
        allowed[name] = values
    references = templates[0].references | templates[1].references
    for name in sorted(n for root, n in references if root == "labels"):
        if allowed.get(name) == frozenset({""}):
            index = on_label[name][-1][0]
            located.add(
                (*path, index),
                f"{label}match[{index}]: {_listed([m for _, m in on_label[name]])}: label "
                f"{name!r} can only be empty or absent, and the target needs it "
                f"({{{{ labels.{name} }}}}): the rule can never act",
            )
            return False
    for field, template in zip(("namespace", "name"), templates, strict=True):
        problem = _never_valid(kind, field, template, allowed, policy)
        if problem is not None:
            located.add(path, f"{label}match: {problem}; the rule can never act")
            return False
    return True


def _never_valid(
    kind: str,
    field: str,
    template: Template,
    allowed: dict[str, frozenset[str]],
    policy: NamespacePolicy,
) -> str | None:
    """Why the target's ``field`` (``template``) is valid for none of the values the matchers
    allow its labels, or None: also when a reference is an annotation or a label the matchers
    leave open (some value may do), or there are too many values to try. The other field
    stands in as a valid one, as ``compile._check_literal_target`` does; the policy speaks
    only about the namespace."""
    names = sorted(n for root, n in template.references if root == "labels")
    if not names or len(names) != len(template.references) or not set(names) <= set(allowed):
        return None
    if math.prod(len(allowed[n]) for n in names) > _MAX_COMBINATIONS:
        return None
    spec = target_kind(kind)
    first: Exception | None = None
    for values in itertools.product(*(sorted(allowed[n]) for n in names)):
        stand_in = {"namespace": "placeholder" if spec.namespaced else "", "name": spec.example}
        try:
            stand_in[field] = template.render(dict(zip(names, values, strict=True)), {})
            probe_policy = policy if field == "namespace" else NamespacePolicy(allow=(), deny=())
            validate_target(Target(kind, stand_in["namespace"], stand_in["name"]), probe_policy)
        except (TemplateError, TargetError) as exc:
            first = first or exc
            continue
        return None
    held = "; ".join(f"{n} one of {', '.join(repr(v) for v in sorted(allowed[n]))}" for n in names)
    return f"target.{field} is valid for none of the values the matchers allow ({held}): {first}"
