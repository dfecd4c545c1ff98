"""Text templates in rule params (a notification's message, a request body's strings). Pure.

Jinja2 in its immutable sandbox: a template sees only the values it is given (``labels``,
``annotations``, ``alert``, ``target``, ``run``, ``rule``), cannot call into Python, and a
missing value renders as an empty string, so a notification never fails on a label the alert
does not carry (a name that is none of these is refused when the rules load:
``remediations.template_names``). ``{{ labels.namespace }}`` reads as in target templates.
Every value a template prints goes through ``escape`` (e.g. Slack mrkdwn's ``&``, ``<``,
``>``): a label value can never become a link or a mention; literal template text is left as
the rule author wrote it.

Rendering runs on the service's event loop, so a template is bounded like a message: ``*``,
``+`` and ``**`` may not build a string or list over ``MAX_RENDERED`` characters or items,
nor an integer over ``MAX_INT_BITS`` bits; no filter, test or method takes a number beyond
``MAX_RENDERED`` (``center(100000000)``, ``slice(10**8)``), nor do a format string's widths
(``remediations.template_formats``); and the output stops at ``MAX_RENDERED`` characters.
The *work* of a render is bounded too (``remediations.template_work``): loop items, calls,
filters and the characters they handle draw from ``MAX_WORK`` steps, calls nest at most
``MAX_DEPTH`` deep and a render gets ``MAX_SECONDS`` of CPU time. Each raises
``TemplateTooLarge`` (the step fails, saying why and in which template); ``check_template``
refuses what it can see without an alert (constants, loops over constant ranges nested past
``MAX_WORK``) when the rules load.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from remediations.base import ActionContext
from remediations.targets import Target
from remediations.template_formats import bounded_str_format, check_constant_format, check_printf
from remediations.template_names import check_names
from remediations.template_work import (
    CALL_STEPS,
    MAX_DEPTH,
    MAX_RENDERED,
    MAX_SECONDS,
    MAX_WORK,
    CountingCodeGenerator,
    TemplateFailed,
    TemplateTooLarge,
    cost,
    counted,
    current,
    joined,
    rendering,
    size,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "MAX_RENDERED",
    "MAX_SECONDS",
    "MAX_TEMPLATE",
    "MAX_WORK",
    "TemplateFailed",
    "TemplateTooLarge",
    "check_template",
    "render",
    "template_values",
]

MAX_TEMPLATE = 8192  # characters; a template is a message, not a program
# Bits an integer built by `*` or `**` may have: far beyond any count, far below a slow one.
MAX_INT_BITS = 4096


def _bounded_binop(op: str, left: Any, right: Any) -> Any:
    """``left <op> right`` for ``*``, ``+``, ``**`` and ``%``, refused when the result would
    pass a bound. A list counts what it holds: ``[s] * n`` is as large as ``s * n``."""
    if op == "+":
        both = isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple)
        if both and size(left) + size(right) > MAX_RENDERED:
            raise TemplateTooLarge(f"template: a sum over {MAX_RENDERED} characters or items")
        return operator.add(left, right)
    if op == "*":
        for seq, times in ((left, right), (right, left)):
            sequence = isinstance(seq, str | list | tuple) and isinstance(times, int)
            if sequence and size(seq) * max(times, 0) > MAX_RENDERED:
                raise TemplateTooLarge(
                    f"template: {size(seq)} x {times} is more than {MAX_RENDERED} characters"
                )
        if _ints(left, right) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateTooLarge(f"template: a product over {MAX_INT_BITS} bits")
        return operator.mul(left, right)
    if op == "%":  # a format's widths build before anything could count them
        check_printf(left, right)
        return operator.mod(left, right)
    growing = _ints(left, right) and right > 0 and abs(left) > 1
    if growing and right * (abs(left).bit_length() - 1) > MAX_INT_BITS:
        raise TemplateTooLarge(f"template: a power over {MAX_INT_BITS} bits")
    return operator.pow(left, right)


def _ints(*values: Any) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _check_numbers(what: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    for value in (*args, *kwargs.values()):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and abs(value) > MAX_RENDERED:
            raise TemplateTooLarge(
                f"template: {what} given {value}; numbers there are at most {MAX_RENDERED}"
            )


def _bounded(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (a filter or a test) refusing numeric arguments beyond the bound: a width
    or a count (``center``, ``indent``, ``slice``, ``batch``) builds that much."""

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        # The first argument is the value filtered (a context first for some filters).
        given = [a for a in args if not isinstance(a, Context)]
        _check_numbers(name, given[1:], kwargs)
        if name == "format" and given:  # ``value % (kwargs or args)``
            check_printf(str(given[0]), kwargs or tuple(given[1:]))
        # What a filter reads it pays for: sort, join, map over a large value are not free.
        current().charge(1 + cost([*given, *kwargs.values()]), name)
        return function(*args, **kwargs)

    return bounded


class _Bounded(ImmutableSandboxedEnvironment):
    """The immutable sandbox with the bounds of the module docstring."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = CountingCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # A fresh dict each: the defaults are Jinja's module-level tables, shared by every
        # environment, and stay untouched.
        self.filters = {name: _bounded(name, f) for name, f in self.filters.items()}
        tests: Mapping[str, Any] = self.tests
        self.tests = {name: _bounded(name, test) for name, test in tests.items()}
        # lipsum(n) builds n paragraphs of filler before anything can count them; a message
        # over an alert has no use for it.
        self.globals.pop("lipsum", None)

    # Captured blocks (a macro's output, {% set %}...{% endset %}, {% filter %}) and ``~``.
    concat = staticmethod(joined)
    joined = staticmethod(joined)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's sandboxed ``str.format``, refusing widths past the bound (template_formats)."""
        wrapper = super().wrap_str_format(value)
        return None if wrapper is None else bounded_str_format(wrapper, value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        result = _bounded_binop(operator, left, right)
        current().charge(cost([result]), operator)
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        what = str(getattr(__obj, "__name__", None) or type(__obj).__name__)
        _check_numbers(what, args, kwargs)
        if __obj is counted:  # a loop's own iterable: counted by the item
            return super().call(__context, __obj, *args, **kwargs)
        budget = current()
        if isinstance(__obj, LoopContext) and args:  # loop(...) in a recursive loop
            what = "a recursive loop"
            args = (counted(args[0]), *args[1:])
        receiver = getattr(__obj, "__self__", None)  # a method reads its string or list
        budget.charge(CALL_STEPS + cost([receiver, *args, *kwargs.values()]), what)
        with budget.call(what):
            return super().call(__context, __obj, *args, **kwargs)


def _environment(escape: Callable[[str], str] | None) -> ImmutableSandboxedEnvironment:
    def finalize(value: Any) -> str:
        if value is not None and not isinstance(value, str):  # str() of a list is work
            current().charge(cost([value]), "printed value")
        text = "" if value is None else str(value)
        return escape(text) if escape is not None else text

    return _Bounded(
        undefined=ChainableUndefined,
        finalize=finalize,
        autoescape=False,
        keep_trailing_newline=False,
    )


_PLAIN = _environment(None)


def check_template(source: str) -> str:
    """``source`` when it parses and names only what it is given; ValueError naming the line
    and the problem otherwise.

    Refused (``remediations.template_names``): a free name other than ``labels``,
    ``annotations``, ``alert``, ``target``, ``run``, ``rule`` and Jinja's globals (a misspelt
    ``lables`` would render as an empty string on every alert); ``labels.app-name``, which Jinja
    reads as ``labels.app - name`` (it fails on every alert: ``labels["app-name"]`` says it);
    and ``labels.k8s.deployment.name``, read as nested lookups, which would render a label named
    ``k8s.deployment.name`` as an empty string without a word (target templates read the dots as
    one flat name; ``labels["k8s.deployment.name"]`` says it). Also what the bounds refuse
    whatever the alert (module docstring).
    """
    if len(source) > MAX_TEMPLATE:
        raise ValueError(f"template is longer than {MAX_TEMPLATE} characters")
    try:
        tree = _PLAIN.parse(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template line {exc.lineno}: {exc.message}") from None
    _check_constants(tree)
    for const in tree.find_all(nodes.Const):
        unstorable = _unstorable(const.value) if isinstance(const.value, str) else None
        if unstorable is not None:
            raise ValueError(f"template line {const.lineno}: a string literal holds {unstorable}")
    _check_loops(tree, 1)
    check_names(tree, _PLAIN.globals)
    return source


class _NotConstant(Exception):
    pass


def _constant(node: nodes.Node) -> Any:
    """The value of a tree of constants (lists and tuples of them), ``*`` and ``**``;
    _NotConstant for anything else."""
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.List):
        return [_constant(item) for item in node.items]
    if isinstance(node, nodes.Tuple):
        return tuple(_constant(item) for item in node.items)
    if isinstance(node, nodes.Mod):  # checked, never evaluated: ``10 % 0`` fails on its own
        check_printf(_constant(node.left), _constant_or_none(node.right) or ())
        raise _NotConstant
    if isinstance(node, nodes.Mul | nodes.Pow):
        op = "*" if isinstance(node, nodes.Mul) else "**"
        return _bounded_binop(op, _constant(node.left), _constant(node.right))
    raise _NotConstant


def _check_constants(tree: nodes.Template) -> None:
    """What the bounds refuse whatever the alert: ``"x" * 100000000``, ``center(10**8)``.
    Raises ValueError naming the line."""
    node: nodes.Node
    kinds = (nodes.Mul, nodes.Pow, nodes.Mod, nodes.Filter, nodes.Test, nodes.Call)
    for node in tree.find_all(kinds):
        try:
            if isinstance(node, nodes.Mul | nodes.Pow | nodes.Mod):
                _constant_or_none(node)
                continue
            assert isinstance(node, nodes.Filter | nodes.Test | nodes.Call)
            values = [
                value
                for arg in (*node.args, *(kw.value for kw in node.kwargs))
                if (value := _constant_or_none(arg)) is not None
            ]
            _check_numbers(_called(node), values, {})
            check_constant_format(node, values, _constant_or_none)
        except TemplateTooLarge as exc:
            problem = exc.message.removeprefix("template: ")
            raise ValueError(f"template line {node.lineno}: {problem}") from None


def _check_loops(node: nodes.Node, runs: int) -> None:
    """Refuse loops over constants nested past MAX_WORK items (``range(60000)`` in
    ``range(60000)``), whatever the alert. ``runs``: how often ``node`` runs; a loop over what
    lint cannot see (``range(labels.n | int)``) counts once here and is bounded when rendered."""
    if not isinstance(node, nodes.For):
        for child in node.iter_child_nodes():
            _check_loops(child, runs)
        return
    _check_loops(node.iter, runs)
    items = runs * (_constant_length(node.iter) or 1)
    if items > MAX_WORK:
        raise ValueError(
            f"template line {node.lineno}: loops nested here run {items} times, more than "
            f"the {MAX_WORK} steps of work a render may take"
        )
    for part in (*node.body, *node.else_, *([node.test] if node.test else [])):
        _check_loops(part, items)


def _constant_length(node: nodes.Node) -> int | None:
    """How many items a loop over ``node`` takes when lint can tell: ``range`` of constants,
    a constant string, list or tuple, or one of those through filters (``| list``)."""
    while isinstance(node, nodes.Filter) and node.node is not None:
        node = node.node
    if isinstance(node, nodes.Call) and getattr(node.node, "name", None) == "range":
        arguments = [_constant_or_none(arg) for arg in node.args]
        if node.kwargs or not arguments or not _ints(*arguments):
            return None
        try:
            return len(range(*arguments))
        except (TypeError, ValueError):
            return None
    value = _constant_or_none(node)
    return len(value) if isinstance(value, str | list | tuple) else None


def _called(node: nodes.Filter | nodes.Test | nodes.Call) -> str:
    """The name of what a filter, test or method call calls, for messages."""
    if isinstance(node, nodes.Call):
        callee = node.node
        return str(getattr(callee, "attr", None) or getattr(callee, "name", None) or "a call")
    return str(node.name)


def _constant_or_none(node: nodes.Node) -> Any:
    try:
        return _constant(node)
    except _NotConstant:
        return None


def render(
    source: str,
    values: Mapping[str, Any],
    escape: Callable[[str], str] | None = None,
    *,
    name: str = "",
) -> str:
    """``source`` rendered with ``values``; each printed value passed through ``escape``.
    Raises TemplateTooLarge past the bounds of the module docstring, its message naming the
    template (``name``, e.g. ``"body.reason"``, and the start of its source)."""
    parts: list[str] = []
    total = 0
    template = _environment(escape).from_string(source)
    try:
        with rendering():
            for part in template.generate(**values):
                total += len(part)
                if total > MAX_RENDERED:
                    raise TemplateTooLarge(f"template: renders more than {MAX_RENDERED} characters")
                parts.append(part)
    except TemplateTooLarge as exc:
        raise TemplateTooLarge(_named(exc.message, source, name)) from None
    except RecursionError:
        # MAX_DEPTH keeps a template's own calls below Python's limit; this is a net.
        problem = f"template: nests deeper than Python allows (more than {MAX_DEPTH} calls)"
        raise TemplateTooLarge(_named(problem, source, name)) from None
    except Exception as exc:
        # The template's own fault over this alert (1/0, a sandbox refusal, an undefined name
        # called): the step fails saying so, rather than being taken for the action's bug.
        problem = f"template: {type(exc).__name__}: {exc}"
        raise TemplateFailed(_named(problem, source, name)) from None
    text = "".join(parts)
    unstorable = _unstorable(text)
    if unstorable is not None:
        raise TemplateFailed(_named(f"template: renders {unstorable}", source, name))
    return text


def _unstorable(text: str) -> str | None:
    """What in ``text`` no record can hold, or None: U+0000 (PostgreSQL's text and jsonb
    refuse it) or a lone surrogate (not UTF-8). A string literal's escape (``"\\u0000"``) or
    ``"%c" | format(n)`` makes either; what a template renders is stored (an approval's preview,
    a notification's text), and a value the store refuses would fail the event on every retry
    until it is dead."""
    if "\x00" in text:
        return "U+0000 (NUL), which no record can hold"
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        return f"a lone surrogate (U+{ord(text[exc.start]):04X}), which is not UTF-8"
    return None


def _named(message: str, source: str, name: str) -> str:
    """``message`` (``"template: ..."``) saying which template: ``name`` and its source's start."""
    start = source if len(source) <= 60 else source[:57] + "..."
    which = f"{name} {start!r}" if name else repr(start)
    return f"template {which}: {message.removeprefix('template: ')}"


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
