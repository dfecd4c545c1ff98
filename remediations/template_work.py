"""The work one template render may do, counted against a budget. Pure.

A template renders on the service's event loop, so bounding what it *outputs* is not enough:
``{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}`` prints nothing and
with ``n`` = 60000 ran for minutes, freezing every request the service serves. Each render
therefore draws from a ``Budget`` of ``MAX_WORK`` steps:

- one step per item of every ``{% for %}`` loop, recursive ``loop(...)`` calls included (the
  code generator wraps each loop's iterable in ``counted``, ``call`` wraps ``loop``'s);
- ``CALL_STEPS`` per call (a macro, ``caller()``, a method, ``range``) and one per filter or
  test, plus what it is given (``cost``: an item of a list a step, ``CHARS_PER_STEP``
  characters a step): ``sort``, ``join``, ``map`` or ``upper`` over a large value cost what
  they read;
- the characters of every value printed (that is not already a string), built by ``*`` or
  ``+``, or joined by ``~`` or a captured block (a macro's output, ``{% set %}...{% endset %}``,
  ``{% filter %}``); what is joined may not exceed ``MAX_RENDERED`` characters either.

Calls may nest ``MAX_DEPTH`` deep (a macro calling itself, a recursive loop), and the render
may use ``MAX_SECONDS`` of CPU time, checked every ``_CHECK_EVERY`` steps: a net for work the
steps do not model. Past any of these, ``TemplateTooLarge`` (the step fails, saying which bound).

The budget of the render in progress lives in a ``ContextVar`` set by ``rendering``: templates
cannot reach it, and renders on other tasks or threads each have their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.visitor import NodeTransformer

from remediations.base import ActionError

__all__ = [
    "CALL_STEPS",
    "CHARS_PER_STEP",
    "MAX_DEPTH",
    "MAX_RENDERED",
    "MAX_SECONDS",
    "MAX_WORK",
    "Budget",
    "CountingCodeGenerator",
    "TemplateFailed",
    "TemplateTooLarge",
    "cost",
    "counted",
    "current",
    "joined",
    "rendering",
    "size",
]

# Characters a rendered template (and any string or list built on the way) may have: a chat
# message or a request body's string, not a document (Slack's own limit is 40,000).
MAX_RENDERED = 65536
# Steps of work one render may take: loop items, calls, characters and items read. A message
# over an alert takes a few hundred; 100,000 empty loop items take about 20 ms.
MAX_WORK = 100_000
# A call (a macro, a method) costs what this many loop items do: a macro call runs Jinja's
# argument handling and a fresh frame, ~20x the time of one loop item.
CALL_STEPS = 20
# Characters copied or read that make one step: a loop item takes ~100x as long as a character.
CHARS_PER_STEP = 64
MAX_DEPTH = 50  # calls within calls: far beyond any message, far below Python's own limit
MAX_SECONDS = 0.25  # CPU seconds of the rendering thread (time.thread_time)
_CHECK_EVERY = 2048  # steps between looks at the clock


class TemplateFailed(ActionError):
    """A template in a step's params could not be rendered over this alert (it raised: a
    division by zero, an undefined name called, a sandbox refusal); the step fails naming it.

    Raised only while an action prepares its call, before it reaches any system: a run that
    failed on it and changed nothing else is not counted in the rule's circuit breaker
    (receiver/pipeline/record.py), and it never acted (``may_have_acted`` False). An action that
    renders after acting must catch it."""

    ACTED_BY_DEFAULT: ClassVar[bool] = False


class TemplateTooLarge(TemplateFailed):
    """A template would build, or work, more than its bounds allow."""


class Budget:
    """The steps, call depth and CPU time one render has used."""

    __slots__ = ("_next_check", "_started", "depth", "used")

    def __init__(self) -> None:
        self.used = 0
        self.depth = 0
        self._started = time.thread_time()
        self._next_check = _CHECK_EVERY

    def charge(self, steps: int, what: str) -> None:
        """Add ``steps`` for ``what`` (e.g. ``"loop items"``). Raises TemplateTooLarge past
        ``MAX_WORK`` steps or ``MAX_SECONDS`` of CPU time."""
        self.used += steps
        if self.used > MAX_WORK:
            raise TemplateTooLarge(
                f"template: more than {MAX_WORK} steps of work (loop items, calls, characters "
                f"handled), the last for {what}"
            )
        if self.used >= self._next_check:
            self._next_check = self.used + _CHECK_EVERY
            spent = time.thread_time() - self._started
            if spent > MAX_SECONDS:
                raise TemplateTooLarge(
                    f"template: more than {MAX_SECONDS} s of CPU time ({spent:.2f} s), "
                    f"the last for {what}"
                )

    @contextmanager
    def call(self, what: str) -> Iterator[None]:
        """One level of call nesting for ``what``. Raises TemplateTooLarge past MAX_DEPTH."""
        if self.depth >= MAX_DEPTH:
            raise TemplateTooLarge(f"template: {what} nests calls more than {MAX_DEPTH} deep")
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1


_CURRENT: ContextVar[Budget | None] = ContextVar("remediator_template_budget", default=None)


@contextmanager
def rendering() -> Iterator[Budget]:
    """A fresh budget for the render inside the block."""
    token = _CURRENT.set(Budget())
    try:
        budget = _CURRENT.get()
        assert budget is not None
        yield budget
    finally:
        _CURRENT.reset(token)


def current() -> Budget:
    """The budget of the render in progress. Fails closed: a bounded template evaluated
    outside ``rendering()`` is refused, never run unbounded."""
    budget = _CURRENT.get()
    if budget is None:
        raise TemplateTooLarge("template: evaluated outside a bounded render")
    return budget


def size(value: Any, cap: int = MAX_RENDERED) -> int:
    """The characters and items in ``value``: a string its characters, a container what it
    holds (a list repeated by reference counts each time, a key-value pair both), anything else
    1. Stops counting once past ``cap``."""
    if isinstance(value, str | bytes | range):
        return len(value)
    if not isinstance(value, Mapping | list | tuple | set | frozenset):
        return 1
    total = 0  # each item at least 1: a list of n numbers is n
    items: Iterable[Any] = value.items() if isinstance(value, Mapping) else value
    for item in items:
        if total > cap:
            break
        total += max(1, size(item, cap - total))
    return total


def cost(values: Iterable[Any], cap: int = MAX_WORK) -> int:
    """The steps it takes to read ``values``: an item of a container one step, characters
    ``CHARS_PER_STEP`` to a step (copying text is cheap next to a loop item); stops past
    ``cap``."""
    total = 0
    for value in values:
        if total > cap:
            break
        if isinstance(value, str | bytes):
            total += 1 + len(value) // CHARS_PER_STEP
        elif isinstance(value, range):
            total += len(value)
        elif isinstance(value, Mapping | list | tuple | set | frozenset):
            items = value.items() if isinstance(value, Mapping) else value
            total += max(1, cost(items, cap - total))
        else:
            total += 1
    return total


def counted(iterable: Any) -> Iterator[Any]:
    """``iterable``'s items, one step each from the current budget."""
    budget = current()
    for item in iterable:
        budget.charge(1, "loop items")
        yield item


def joined(parts: Iterable[Any]) -> str:
    """``str`` of each part joined (what ``~`` and captured blocks build), refused past
    ``MAX_RENDERED`` characters before it is built."""
    texts = [part if isinstance(part, str) else str(part) for part in parts]
    total = sum(map(len, texts))
    if total > MAX_RENDERED:
        raise TemplateTooLarge(f"template: joins {total} characters, more than {MAX_RENDERED}")
    current().charge(1 + total // CHARS_PER_STEP, "joined text")
    return "".join(texts)


def _counted_call(iterable: nodes.Node) -> nodes.Call:
    name = nodes.ImportedName(f"{__name__}.counted", lineno=iterable.lineno)
    return nodes.Call(name, [iterable], [], None, None, lineno=iterable.lineno)


class _CountLoops(NodeTransformer):
    """Every ``{% for %}`` iterates ``counted(iterable)``."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _counted_call(node.iter)
        return node


class CountingCodeGenerator(CodeGenerator):
    """Jinja's code generator, with each loop's iterable counted and ``~`` joined by
    ``joined`` (through ``environment.joined``). The environment using it must provide
    ``joined`` and a ``concat`` that bounds captured blocks."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        _CountLoops().visit(node)
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.joined((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")
