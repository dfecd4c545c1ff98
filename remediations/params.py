"""What the params models of actions share: strictness, durations, numbers that refuse a
boolean, booleans that refuse anything else. Pure.

Params are written in rule files and validated when the rules load; the executor parses them
again from ``model_dump(mode="json")``, so every type here survives that round trip (a duration
dumps as ``"10m"``, never as a bare number a rule file would not accept).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)

from remediations.durations import MAX_DURATION_S, format_duration, parse_duration
from remediations.numerals import is_whole_number
from remediations.visible_text import shown

__all__ = ["Boolean", "Duration", "Integer", "Number", "StrictParams", "literal_templates"]

# What starts Jinja's markup (an expression, a statement, a comment): in a param taken as
# written it is a rule author's mistake, not text anyone sends to a system.
_TEMPLATE_MARKS = ("{{", "{%", "{#")


class StrictParams(BaseModel):
    """Unknown fields are errors (a typo in a rule must not be ignored); immutable once parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # The fields whose strings are templates over the alert (notify's message and title,
    # http.call's body). Every other string is used as written, so ``literal_templates``
    # refuses template markup in it when the rules load.
    template_fields: ClassVar[frozenset[str]] = frozenset()


def literal_templates(params: BaseModel) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """(path, text) of each string of ``params`` that holds Jinja markup (``{{``, ``{%``,
    ``{#``) outside its model's ``template_fields``: ``("value",)`` of a set_env step's
    ``value: "{{ labels.pool }}"``, ``("roles", 0)`` of a list item. A model without
    ``template_fields`` (the Kubernetes actions' ``ActionParams``) has none. Such text is never
    rendered: a set_env step set the variable to the braces, and an ``exclude_applications``
    item replaced the list that spares pg_dump; the rule loader says so at its line."""
    templates: frozenset[str] = getattr(type(params), "template_fields", frozenset())
    for name in type(params).model_fields:
        if name not in templates:
            yield from _marked((name,), getattr(params, name))


def _marked(path: tuple[str | int, ...], value: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        if any(mark in value for mark in _TEMPLATE_MARKS):
            yield path, value
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _marked((*path, name), getattr(value, name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _marked((*path, str(key)), item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _marked((*path, index), item)


def _seconds(value: object) -> float:
    seconds = parse_duration(value)
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{value!r} is longer than {format_duration(MAX_DURATION_S)} (a year)")
    return seconds


# A field's bounds (``Field(ge=1)``) as pydantic words them, and as durations.
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def _bounds_as_durations(value: object, handler: ValidatorFunctionWrapHandler) -> float:
    # Pydantic says "Input should be greater than or equal to 1" of `idle_for: 1ms`: a number
    # without a unit, where the rule wrote a duration. Say the bound as a duration instead.
    try:
        seconds: float = handler(value)
    except ValidationError as exc:
        for error in exc.errors():
            bound = _BOUNDS.get(error["type"])
            if bound is not None and "ctx" in error:
                limit = format_duration(float(error["ctx"][bound[0]]))
                raise ValueError(f"{value!r} is out of range: give {bound[1]} {limit}") from None
        raise
    return seconds


# Seconds as a float in Python; ``10m`` in a rule file and in the JSON dump. A field's bounds
# (``Duration = Field(ge=1)``) are said as durations: "give at least 1s".
Duration = Annotated[
    float,
    BeforeValidator(_seconds),
    WrapValidator(_bounds_as_durations),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]


def _not_a_boolean(value: object) -> object:
    # Pydantic's lax mode reads YAML's `true` as 1 (`port: true`, `count: true`): a slip, not
    # a number.
    if isinstance(value, bool):
        word = "true" if value else "false"
        raise ValueError(f"{word} is a boolean, not a number: write the number")
    return value


# A whole number's text is checked by `numerals.is_whole_number`: pydantic's lax mode reads
# text with int() rules, `_` between digits included (`REMEDIATOR_PORT=9_096` was port 9096),
# and a fraction of zero (`9096.0`); `serve --port` refuses both.
# More digits than any count, port or size has: refused before int() reads them (it refuses
# more than 4,300 digits with a ValueError of its own, and pydantic quoted them all back).
_MAX_DIGITS = 20


def _whole_number(value: object) -> object:
    """``value`` as a whole number: an int as it is; text (a variable's, quoted YAML) stripped
    like every setting's text, then ASCII digits; a boolean or a float refused. ValueError
    saying what was given and what to write."""
    value = _not_a_boolean(value)
    if isinstance(value, float):
        raise ValueError(f"{value!r} is not an integer: write it without a fraction")
    if not isinstance(value, str):
        return value  # an int, or pydantic's own error for anything else
    text = value.strip()
    if not is_whole_number(text):
        raise ValueError(
            f"{shown(text)} is not an integer: write it with the digits 0-9 alone (no `_`, `+`,"
            " fraction or exponent)"
        )
    if len(text.lstrip("-").lstrip("0")) > _MAX_DIGITS:
        raise ValueError(
            f"{shown(text)} has {len(text):,} digits: far out of range, write a smaller one"
        )
    return int(text)


# A whole number, written as one: a boolean, a fraction or text other than ASCII digits is
# refused (settings' ports, counts and sizes; connections' and rules' counts).
Integer = Annotated[int, BeforeValidator(_whole_number)]
# A number that refuses a boolean (a factor: `factor: true` read as 1.0).
Number = Annotated[float, BeforeValidator(_not_a_boolean)]


def _only_a_boolean(value: object) -> bool:
    # Pydantic's lax mode reads the text "yes", "on", "1" and the numbers 1 and 0 as booleans:
    # `restore: "yes"` (quoted, so YAML's text) read as true, and `restore: "no"` would read as
    # false just as silently. A flag in a rule is YAML's true or false, nothing else.
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        raise ValueError(f"{value!r} is text, not a boolean: write true or false, unquoted")
    raise ValueError(f"{value!r} is not a boolean: write true or false")


# True or false as YAML or JSON writes them; text and numbers are refused (params' flags).
Boolean = Annotated[bool, BeforeValidator(_only_a_boolean)]
