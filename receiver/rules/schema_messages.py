"""What a rule file's schema errors say, at their place in the file. Pure.

A key is named only when it looks like one (``plausible_key``): a line of another file read as
a key (/etc/shadow, given to ``lint`` or as the rules directory) or a DSN written where a key
goes is not copied into a terminal, a CI log or the service's log, as the settings file and
the approvers file do not copy it either.
"""

from __future__ import annotations

import difflib

from pydantic_core import ErrorDetails

from receiver.rules.schema import FIELD_NAMES, SPEC_FIELDS
from receiver.rules.shapes import shape_message
from receiver.rules.steps import prefixed
from receiver.typos import plausible_key

__all__ = ["schema_message", "top_level_key_problem"]

NOT_SHOWN = "a key that is no field's name (not shown: is this a rule file?)"


def top_level_key_problem(key: str) -> str:
    """What a rule file says of a top-level key other than ``rules``."""
    if not plausible_key([key]):
        return f"{NOT_SHOWN}; only `rules` is allowed"
    hint = " (did you mean 'rules'?)" if difflib.get_close_matches(key, ["rules"]) else ""
    return f"unknown top-level key {key!r}{hint}; only `rules` is allowed"


def schema_message(error: ErrorDetails) -> tuple[tuple[str | int, ...], str]:
    """(path of the offending item, operator-facing message) for one pydantic error."""
    loc = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        if not plausible_key([key]):
            return loc, prefixed(loc[:-1], NOT_SHOWN)
        if key == "when" and "on_resolved" in loc:
            return loc, "on_resolved steps take no `when`: they run whenever the alert resolves"
        if key == "when" and "on_failed" in loc:
            return loc, "on_failed steps take no `when`: they run whenever verification fails"
        if key in FIELD_NAMES:
            # A field of another part of a rule ("did you mean 'action'?" of `action`).
            suffix = " (a field of another part of a rule: check its indentation)"
        else:
            hint = difflib.get_close_matches(key, FIELD_NAMES, n=1, cutoff=0.75)
            suffix = f" (did you mean {hint[0]!r}?)" if hint else ""
        return loc, prefixed(loc[:-1], f"unknown field {key!r}{suffix}")
    if kind == "missing":
        return loc, prefixed(loc[:-1], f"missing required field {str(loc[-1])!r}")
    if kind == "too_short" and loc and loc[-1] == "match":
        return loc, "match must list at least one matcher; an empty list would match every alert"
    if kind == "too_short" and loc and loc[-1] == "steps":
        return loc, "steps must list at least one step"
    if (shape := shape_message(error, SPEC_FIELDS)) is not None:
        if error.get("ctx", {}).get("class_name") in ("StepSpec", "ResolvedStepSpec"):
            shape += " (a step is `- action: NAME`, with its params under it)"
        return loc, prefixed(loc, shape)
    message = error["msg"].removeprefix("Value error, ") if kind == "value_error" else error["msg"]
    return loc, prefixed(loc, message)
