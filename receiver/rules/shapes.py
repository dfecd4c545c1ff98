"""What a value written as another kind of value is told, in a rule file, a rule test file or
the settings file: a map where a list or text was given, and so on. Pure.

Pydantic says "Input should be a valid dictionary or instance of TargetSpec", naming a class of
ours and nothing to write; this names what the part takes (its fields) and what was given,
never the value itself (a DSN written where a connection's map goes holds a password).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic_core import ErrorDetails

__all__ = ["shape_message"]


def shape_message(error: ErrorDetails, fields_of: Mapping[str, Sequence[str]]) -> str | None:
    """What a part of a file written as another kind of value takes (``target:
    Deployment/shop/web``, ``- kubernetes.rollout_restart`` as a step): a map (of the fields
    ``fields_of`` gives for the class pydantic names), or a list; None for another error.
    Pydantic said "Input should be a valid dictionary or instance of TargetSpec", a class of
    ours, naming nothing to write."""
    if error["type"] not in ("model_type", "dict_type", "list_type"):
        return None
    given = error["input"]
    kinds: tuple[tuple[type | tuple[type, ...], str], ...] = (
        (bool, "true or false"),  # before int, which bool is: YAML's `on` is no number
        (str, "text"),
        ((int, float), "a number"),
        (list, "a list"),
        (dict, "a map"),
    )
    got = next((name for kind, name in kinds if isinstance(given, kind)), "nothing")
    if error["type"] == "list_type":
        return f"expected a list (`[...]`, or one `- ` line per item), not {got}"
    if error["type"] == "dict_type":
        return f"expected a map (`name: value` pairs, or `{{...}}`), not {got}"
    fields = fields_of.get(str(error.get("ctx", {}).get("class_name", "")), ())
    of = f" of {', '.join(fields)}" if fields else ""
    return f"expected a map{of}, not {got}"
