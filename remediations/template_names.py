"""What a text template may name, checked on its parsed tree when the rules load. Pure.

A template in a rule's params (``remediations.templates``) is rendered with ``ROOTS`` only
(``template_values``); any other free name renders as an empty string (``ChainableUndefined``),
so a misspelt ``{{ lables.namespace }}`` would send ``""`` on every alert without a word. Jinja
reads a label name with ``-`` or ``.`` as arithmetic or nested lookups; these are refused here
with the spelling that says it (``labels["app-name"]``), as target templates refuse an unknown
root (``receiver.templating``).
"""

from __future__ import annotations

import difflib
from collections.abc import Collection

from jinja2 import meta, nodes

__all__ = ["ROOTS", "check_names"]

# The names ``remediations.templates.template_values`` gives every template, in its order.
ROOTS = ("labels", "annotations", "alert", "target", "run", "rule")
_MAPS = ("labels", "annotations")


def check_names(tree: nodes.Template, builtins: Collection[str]) -> None:
    """Raise ValueError (``template line N: ...``, with the spelling to use) for the first of:
    ``labels.app-name`` (read as ``labels.app - name``), ``labels.k8s.deployment.name`` (read as
    nested lookups), a free name that is neither one of ``ROOTS`` nor one of ``builtins`` (the
    environment's globals: ``range``, ``dict``, ...). Names the template binds itself
    (``{% set %}``, loop variables, macro arguments) are not free."""
    for sub in tree.find_all(nodes.Sub):
        _check_dash(sub)
    for node in tree.find_all(nodes.Getattr):
        # Outermost first: the first chain found is the whole of it.
        root, chain = _chain(node)
        if root is not None and len(chain) > 1:
            dotted = ".".join(chain)
            raise ValueError(
                f"template line {node.lineno}: {root}.{dotted} reads the dots as "
                f'nested lookups; for a name with dots write {root}["{dotted}"]'
            )
    free = meta.find_undeclared_variables(tree) - set(ROOTS) - set(builtins)
    if free:
        # The first one written, for its line; find_undeclared_variables gives a set.
        first = next(n for n in tree.find_all(nodes.Name) if n.ctx == "load" and n.name in free)
        hint = difflib.get_close_matches(first.name, ROOTS, n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(
            f"template line {first.lineno}: unknown name {first.name!r}{suggestion}; a template "
            f"reads {', '.join(ROOTS)}, and names it sets itself (it would render as an empty "
            "string)"
        )


def _chain(node: nodes.Getattr) -> tuple[str | None, list[str]]:
    """(``labels`` or ``annotations``, the attribute names after it) when ``node`` is a chain
    of attribute lookups on one of them, else (None, the names)."""
    chain: list[str] = []
    inner: nodes.Node = node
    while isinstance(inner, nodes.Getattr):
        chain.insert(0, inner.attr)
        inner = inner.node
    named = isinstance(inner, nodes.Name) and inner.name in _MAPS
    return (inner.name if named and isinstance(inner, nodes.Name) else None), chain


def _check_dash(sub: nodes.Sub) -> None:
    """``labels.app-name-x`` is ``((labels.app - name) - x)``: a subtraction whose leftmost
    operand reads ``labels`` (or ``annotations``) and whose right operands are bare names."""
    names: list[str] = []
    left: nodes.Node = sub
    while isinstance(left, nodes.Sub) and isinstance(left.right, nodes.Name):
        names.insert(0, left.right.name)
        left = left.left
    if not names or not isinstance(left, nodes.Getattr):
        return
    root, chain = _chain(left)
    if root is None:
        return
    written = "-".join([".".join(chain), *names])
    raise ValueError(
        f"template line {sub.lineno}: {root}.{written} reads as {root}.{'.'.join(chain)} minus "
        f'{" minus ".join(names)}; for a name with "-" write {root}["{written}"]'
    )
