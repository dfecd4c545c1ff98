"""What is wrong with the rule files: one ``RuleError`` per problem, all of them in a
``RuleSetError``. Raised by the compiler and the loader, shown by ``remediator lint``.

A ``RuleError`` with ``warning=True`` is a warning: the rules load, but something reads
differently from what it seems (an item Alertmanager's two matcher grammars read differently).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["RuleError", "RuleSetError", "in_file_order"]


@dataclass(frozen=True, slots=True, order=True)
class RuleError:
    """One problem in the rule files. ``line`` is 1-based; 0 means the whole file or directory.
    ``warning`` marks a warning, which does not stop the rules from loading."""

    file: str
    line: int
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        return f"{where}: warning: {self.message}" if self.warning else f"{where}: {self.message}"


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
