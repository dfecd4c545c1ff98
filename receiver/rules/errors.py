"""What is wrong with the rule files: one ``RuleError`` per problem, all of them in a
``RuleSetError``. Raised by the compiler and the loader, shown by ``remediator lint``.

A ``RuleError`` with ``warning=True`` is a warning: the rules load, but something reads
differently from what it seems (an item Alertmanager's two matcher grammars read differently).
A warning that says the same of many rules (no notify channel configured, at each field that
names one) carries it as ``Shared``, so that the service's log says it once (``logged``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["RuleError", "RuleSetError", "Shared", "in_file_order", "logged"]


@dataclass(frozen=True, slots=True)
class Shared:
    """What a warning says in words it shares with others: ``text``, with ``{}`` where their
    ``item``s go (e.g. a channel's name, quoted), and the ``rule`` it is about."""

    text: str
    item: str
    rule: str


@dataclass(frozen=True, slots=True, order=True)
class RuleError:
    """One problem in the rule files. ``line`` is 1-based; 0 means the whole file or directory.
    ``warning`` marks a warning, which does not stop the rules from loading; ``shared``, what
    it says in words other warnings share (None: its own)."""

    file: str
    line: int
    message: str
    warning: bool = False
    shared: Shared | None = field(default=None, compare=False)

    @property
    def at(self) -> str:
        """``file:line``, or the file alone for the whole file or directory (line 0)."""
        return f"{self.file}:{self.line}" if self.line > 0 else self.file

    def __str__(self) -> str:
        return (
            f"{self.at}: warning: {self.message}" if self.warning else f"{self.at}: {self.message}"
        )


class RuleSetError(Exception):
    """The rule files are invalid; ``errors`` lists every problem found, in file order, and
    ``warnings`` the warnings found on the way."""

    def __init__(self, errors: Sequence[RuleError], warnings: Sequence[RuleError] = ()) -> None:
        self.errors = list(errors)
        self.warnings = list(warnings)
        super().__init__("\n".join(str(e) for e in self.errors))


def in_file_order(errors: Iterable[RuleError]) -> list[RuleError]:
    """Sorted by (file, line); stable, so errors on one line keep the order they were found in."""
    return sorted(errors, key=lambda e: (e.file, e.line))


def logged(warnings: Sequence[RuleError]) -> list[dict[str, object]]:
    """The fields of each "rule warning" log line for ``warnings``, in their order: one
    ``{"warning": str(w)}`` per warning, except those sharing a ``Shared.text``, said once
    where the first of them was: ``{"warning": text with their items, "rules": the rules
    they are about, "at": their file:line}``, each list in order, without repeats. The
    start-up's log said "no notify channels are configured" once per field of every shipped
    rule, seven lines before the banner; ``remediator lint`` still shows each at its line."""
    groups: dict[str, list[RuleError]] = {}
    for warning in warnings:
        if warning.shared is not None:
            groups.setdefault(warning.shared.text, []).append(warning)
    lines: list[dict[str, object]] = []
    for warning in warnings:
        if warning.shared is None:
            lines.append({"warning": str(warning)})
            continue
        group = groups.pop(warning.shared.text, None)
        if group is None:
            continue  # said already, with the first of its group
        shared = [w.shared for w in group if w.shared is not None]
        items = ", ".join(dict.fromkeys(s.item for s in shared))
        lines.append(
            {
                "warning": warning.shared.text.format(items),
                "rules": list(dict.fromkeys(s.rule for s in shared)),
                "at": list(dict.fromkeys(w.at for w in group)),
            }
        )
    return lines
