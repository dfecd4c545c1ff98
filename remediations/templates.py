"""Text templates in rule params (a notification's message, a request body's strings). Pure.

Jinja2 in its immutable sandbox: a template sees only the values it is given (``labels``,
``annotations``, ``alert``, ``target``, ``run``, ``rule``), cannot call into Python, and a
missing value renders as an empty string, so a notification never fails on a label the alert
does not carry. ``{{ labels.namespace }}`` reads as in target templates. Every value a template
prints goes through ``escape`` (e.g. Slack mrkdwn's ``&``, ``<``, ``>``): a label value can never
become a link or a mention; literal template text is left as the rule author wrote it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from remediations.base import ActionContext
from remediations.targets import Target

__all__ = ["MAX_TEMPLATE", "check_template", "render", "template_values"]

MAX_TEMPLATE = 8192  # characters; a template is a message, not a program


def _environment(escape: Callable[[str], str] | None) -> ImmutableSandboxedEnvironment:
    def finalize(value: Any) -> str:
        text = "" if value is None else str(value)
        return escape(text) if escape is not None else text

    return ImmutableSandboxedEnvironment(
        undefined=ChainableUndefined,
        finalize=finalize,
        autoescape=False,
        keep_trailing_newline=False,
    )


_PLAIN = _environment(None)


def check_template(source: str) -> str:
    """``source`` when it parses; ValueError naming the line and the problem otherwise.

    ``labels.k8s.deployment.name`` is refused: Jinja reads the dots as nested lookups, which
    would render a label named ``k8s.deployment.name`` as an empty string without a word (target
    templates read the dots as one flat name). ``labels["k8s.deployment.name"]`` says it.
    """
    if len(source) > MAX_TEMPLATE:
        raise ValueError(f"template is longer than {MAX_TEMPLATE} characters")
    try:
        tree = _PLAIN.parse(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template line {exc.lineno}: {exc.message}") from None
    for node in tree.find_all(nodes.Getattr):
        # Outermost first: the first chain found is the whole of it.
        chain: list[str] = []
        inner: nodes.Node = node
        while isinstance(inner, nodes.Getattr):
            chain.insert(0, inner.attr)
            inner = inner.node
        named = isinstance(inner, nodes.Name) and inner.name in ("labels", "annotations")
        if len(chain) > 1 and named:
            assert isinstance(inner, nodes.Name)
            dotted = ".".join(chain)
            raise ValueError(
                f"template line {node.lineno}: {inner.name}.{dotted} reads the dots as "
                f'nested lookups; for a name with dots write {inner.name}["{dotted}"]'
            )
    return source


def render(
    source: str, values: Mapping[str, Any], escape: Callable[[str], str] | None = None
) -> str:
    """``source`` rendered with ``values``; each printed value passed through ``escape``."""
    return _environment(escape).from_string(source).render(**values)


def template_values(ctx: ActionContext, target: Target) -> dict[str, Any]:
    """What a template may read: ``labels`` and ``annotations`` of the alert, ``alert``
    (status, starts_at, generator_url), ``target`` (kind, namespace, name, key), ``run``
    (id, dry_run) and ``rule``."""
    alert = ctx.alert
    return {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "alert": {
            "status": alert.status,
            "starts_at": alert.starts_at,
            "generator_url": alert.generator_url,
        },
        "target": {**target.as_dict(), "key": target.key},
        "run": {"id": ctx.run_id, "dry_run": ctx.dry_run},
        "rule": ctx.rule,
    }
