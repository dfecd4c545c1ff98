"""String formatting in templates, bounded before it runs. Pure.

``%`` (``"%-20s" % x``), the ``format`` filter (the same ``%``) and ``str.format`` /
``format_map`` build, in one call, what their format string asks for, before anything can
count it: ``"%0200000000d" % 1`` made a 200 MB string and held the event loop for 4 s,
``"%.200000000f" % 1.5`` for 6 s (the CPU-time net is looked at between steps, never inside
one call). So the widths and precisions of one format string, written in it
(``%0200000000d``, ``{:0200000000d}``) or taken from the arguments (``"%*d" % (n, 1)``,
``"{:{w}}".format(x, w=n)``), may add up to ``MAX_RENDERED`` at most.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from string import Formatter
from typing import Any

from jinja2 import nodes

from remediations.template_work import MAX_RENDERED, TemplateTooLarge

__all__ = ["bounded_str_format", "check_constant_format", "check_format", "check_printf"]

# A printf conversion's flags, width and precision: ``%(key)-08.3f`` -> width 08, precision 3.
_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+)?)?")
# \d, not [0-9]: str.format reads any script's decimal digits in a spec (an Arabic-Indic 5
# is a width of 5), so an ASCII class would let such a width through uncounted. (printf takes
# ASCII digits only; there \d counts a width Python then refuses: never one too few.)
_DIGITS = re.compile(r"\d+")


def _refuse(what: str, total: int) -> None:
    if total > MAX_RENDERED:
        raise TemplateTooLarge(
            f"template: {what} asks for widths and precisions of {total} characters, more "
            f"than {MAX_RENDERED}"
        )


def _numbers(values: Iterable[Any]) -> int:
    """The sum of the integers among ``values`` (what a ``*`` or a nested field takes)."""
    return sum(abs(v) for v in values if isinstance(v, int) and not isinstance(v, bool))


def check_printf(template: Any, args: Any = ()) -> None:
    """Raise TemplateTooLarge when ``template % args`` would ask for more than MAX_RENDERED
    characters of widths and precisions. ``args``: what ``%`` is given (a tuple is its
    arguments; anything else, a mapping included, is one). An argument counts only when a
    ``*`` takes it as a width or precision: each conversion takes its ``*`` arguments, then
    the value it formats, in order (``"%*d" % (5, 100000)`` asks for 5, not 100005). A
    ``template`` that is no string (``10 % 3``) formats nothing."""
    if not isinstance(template, str):
        return
    given = args if isinstance(args, tuple) else (args,)
    total = 0
    taken = 0
    for match in _PRINTF.finditer(template.replace("%%", "")):
        for number in match.groups():
            if number == "*":
                total += _numbers(given[taken : taken + 1])
                taken += 1
            elif number:
                total += int(number)
        taken += 1  # the value the conversion formats
    _refuse("a % format", total)


def check_format(template: str, args: Any = (), kwargs: Mapping[str, Any] | None = None) -> None:
    """Raise TemplateTooLarge when ``template.format(*args, **kwargs)`` (or ``format_map``,
    its mapping in ``kwargs``) would ask for more than MAX_RENDERED characters of widths and
    precisions: the digits written in its specs, and the values of the fields nested in them
    (``{:{w}}``: ``w``'s; every integer given when a nested field names an attribute or an
    item, which is not looked up here). ValueError-free: a template Python cannot parse is
    left to Python to refuse."""
    try:
        specs = _specs(template)
        nested = _nested_fields(template)
    except ValueError:
        return
    total = sum(int(d) for spec in specs for d in _DIGITS.findall(_outside_fields(spec)))
    given = dict(kwargs or {})
    if nested is None:
        total += _numbers([*args, *given.values()])
    else:
        total += _numbers(
            args[int(name)] if name.isdigit() and int(name) < len(args) else given.get(name)
            for name in nested
        )
    _refuse("a format string", total)


# A field's name that is looked up as it is: a position or a keyword.
_PLAIN_FIELD = re.compile(r"\d+|[A-Za-z_]\w*")


def _nested_fields(template: str) -> list[str] | None:
    """The names of the fields nested in ``template``'s specs, in order, an automatically
    numbered one as its position (Python numbers a field before the fields in its spec); None
    when one is not a plain name (``{w.x}``, ``{0[1]}``)."""
    found: list[str] = []
    position = 0

    def walk(text: str, in_spec: bool) -> bool:
        nonlocal position
        for _, field, spec, _ in Formatter().parse(text):
            if field is None:
                continue
            name = field
            if field == "":
                name, position = str(position), position + 1
            elif in_spec and not _PLAIN_FIELD.fullmatch(field):
                return False
            if in_spec:
                found.append(name)
            if spec and not walk(spec, True):
                return False
        return True

    return found if walk(template, False) else None


def _specs(template: str) -> list[str]:
    """Every format spec in ``template``, those nested in a spec included."""
    found: list[str] = []
    for _, field, spec, _ in Formatter().parse(template):
        if field is not None and spec:
            found.append(spec)
            found += _specs(spec)
    return found


def _outside_fields(spec: str) -> str:
    """``spec`` without its nested fields (``{w}``), whose digits are no widths."""
    return re.sub(r"\{[^{}]*\}", "", spec)


def bounded_str_format(wrapper: Callable[..., str], method: Any) -> Callable[..., str]:
    """``wrapper`` (Jinja's sandboxed ``str.format`` or ``format_map`` of ``method``, a bound
    method of a string) refusing, before it runs, what ``check_format`` refuses."""
    template: str = method.__self__
    mapped = method.__name__ == "format_map"

    def bounded(*args: Any, **kwargs: Any) -> str:
        given = args[0] if mapped and args and isinstance(args[0], Mapping) else kwargs
        check_format(template, () if mapped else args, given)
        return wrapper(*args, **kwargs)

    return functools.update_wrapper(bounded, method)


def check_constant_format(
    node: nodes.Filter | nodes.Test | nodes.Call,
    args: list[Any],
    constant: Callable[[nodes.Node], Any],
) -> None:
    """At load: a constant format string's widths (``"%0200000000d" | format(1)``,
    ``"{:0200000000d}".format(1)``), refused as when rendered. ``args``: the call's constant
    arguments; ``constant``: a node's constant value, or None."""
    if isinstance(node, nodes.Filter) and node.name == "format" and node.node is not None:
        template = constant(node.node)
        if isinstance(template, str):
            check_printf(template, tuple(args))
    callee = node.node if isinstance(node, nodes.Call) else None
    if isinstance(callee, nodes.Getattr) and callee.attr in ("format", "format_map"):
        template = constant(callee.node)
        if isinstance(template, str):
            check_format(template, args)
