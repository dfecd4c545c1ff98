"""Values in a step's params that JSON has no spelling for. Pure.

A step's params are stored as JSON (jsonb) and ``http.call`` posts its body as JSON, but YAML
reads more: a number beyond a float's range (``1.0e+999``) or ``!!float nan`` is a float JSON
cannot write (Python's ``json`` writes ``Infinity``, which no JSON reader takes), and an
explicit ``!!timestamp`` is a date. In an ``http.call`` body, where any value goes, the first
was posted as ``{"c":Infinity}`` and the second failed the whole load as "please report
this", naming no file or line. Each is now refused at its own key
(``receiver.rules.steps.check_params``), and by ``http.call``'s params model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["not_json"]


def not_json(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(the key path under ``value``, what is wrong) for each value in ``value``'s tree that
    is neither text, a number JSON can write, true, false, null, a list nor a mapping; in the
    order written. A mapping's keys are text already (``yaml_lines`` refuses others)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from not_json(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from not_json(item, (*path, index))
    elif isinstance(value, float) and not math.isfinite(value):
        yield (
            path,
            (
                f"{value} is no JSON number (a number beyond about 1.8e308 reads as infinity):"
                " write a smaller one, or quote it for the text"
            ),
        )
    elif not (value is None or isinstance(value, str | bool | int | float)):
        yield (
            path,
            (
                f"a {type(value).__name__} is no JSON value (an explicit YAML tag such as"
                " !!timestamp): quote it for the text"
            ),
        )
