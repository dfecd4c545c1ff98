"""What every command shares: user errors and exit codes, the settings, the console."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import tempfile
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from receiver.config import ConfigError, Settings, load_settings
from remediations.numerals import is_whole_number

__all__ = [
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "BadUsage",
    "Choice",
    "Integer",
    "State",
    "UserError",
    "console",
    "counted",
    "echoed",
    "output_option",
    "print_listing",
    "shown",
    "state",
    "written_whole",
]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UserError(click.ClickException):
    """A problem the user must fix; printed as ``error: ...`` without a traceback (exit 1)."""

    exit_code = EXIT_FAILURE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class BadUsage(UserError):
    """Bad configuration or arguments: exit code 2, like click's own usage errors."""

    exit_code = EXIT_USAGE


@dataclasses.dataclass
class State:
    """The group's context object: the ``--config`` file, its settings loaded on first use."""

    config_file: Path | None
    _settings: Settings | None = None

    def settings(self) -> Settings:
        """The settings from the file and REMEDIATOR_* variables. Raises BadUsage if invalid."""
        if self._settings is None:
            try:
                self._settings = load_settings(self.config_file, os.environ)
            except ConfigError as exc:
                raise BadUsage(f"configuration: {exc.message}") from None
        return self._settings


# The most of an argument an error repeats: a value pasted by mistake may be a whole file, and
# repeated whole it drowns the reason.
_ECHO_CHARS = 40


def echoed(text: str) -> str:
    """``text`` as an error quotes it: its first 40 characters (then "…"), control characters
    written as escapes (``shown``), in quotes."""
    return repr(shown(text if len(text) <= _ECHO_CHARS else text[:_ECHO_CHARS] + "…"))


class Choice(click.Choice[str]):
    """click's Choice, but the refused value is quoted by ``echoed``: click repeated it whole
    (``Invalid value for '--state': '<the whole value>' is not one of ...``)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """``value`` when it is one of the choices, else click's usage error (exit 2)."""
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            allowed = ", ".join(repr(choice) for choice in self.choices)
            self.fail(f"{echoed(str(value))} is not one of {allowed}.", param, ctx)


_BIGINT = (-(2**63), 2**63 - 1)


class Integer(click.ParamType[int]):
    """An integer argument written in ASCII digits (``-`` first for a negative one) in
    [minimum, maximum] (default: PostgreSQL's bigint, the range of every id), else click's
    usage error naming the argument (exit 2, before anything is sent): for an Arabic-Indic
    five, ``Invalid value for '--limit': '...' is not an integer: write it with the digits
    0-9``."""

    name = "integer"

    def __init__(self, minimum: int = _BIGINT[0], maximum: int = _BIGINT[1]) -> None:
        self.minimum, self.maximum = minimum, maximum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """``value`` (the argument's text; an int default passes through) as an int."""
        if isinstance(value, int):
            return value
        text = str(value)
        # click's int type calls int(), which also takes other scripts' digits ('events retry'
        # with an Arabic-Indic one retried item 1), `_` ('1_0' was 10) and blanks.
        if not is_whole_number(text):
            self.fail(f"{echoed(text)} is not an integer: write it with the digits 0-9", param, ctx)
        # More digits than the bounds have is out of range before int() reads it (int() refuses
        # more than 4,300 digits with a ValueError of its own).
        widest = len(str(max(abs(self.minimum), abs(self.maximum))))
        if (
            len(text.lstrip("-").lstrip("0")) > widest
            or not self.minimum <= int(text) <= self.maximum
        ):
            shortened = text if len(text) <= _ECHO_CHARS else text[:_ECHO_CHARS] + "…"
            self.fail(f"{shortened} is not in {self.minimum}..{self.maximum}", param, ctx)
        return int(text)


def counted(n: int, word: str) -> str:
    """``n`` and ``word``, plural unless one: ``1 rule``, ``2 rules``, ``0 warnings``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def state(ctx: click.Context) -> State:
    """The ``State`` the ``remediator`` group put in the context."""
    found = ctx.find_object(State)
    assert found is not None
    return found


# ``--output``/``-o`` of the commands that write a document (a report, an export): a file
# path, or None for standard output.
output_option = click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write to this file instead of standard output.",
)


@contextlib.contextmanager
def written_whole(path: Path) -> Iterator[Any]:
    """A text file (UTF-8) to write ``path``'s new content to; ``path`` gets it only once the
    block ends without an error. ``-o FILE`` opened FILE for writing first: an export that
    then failed (a database with no schema, one that went away, Ctrl-C) had emptied FILE, or
    left part of an export, cut mid-line, that reads as a whole one. A path that exists and is
    not a regular file (``/dev/stdout``, a FIFO, ``>(gzip)``) is written as it is.

    A symbolic link is followed: the file it names is replaced, and the link stays a link.

    Raises OSError when the file cannot be created or replaced."""
    try:
        mode: int | None = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        with path.open("w", encoding="utf-8") as out:
            yield out
        return
    if path.is_symlink():  # to a regular file, or to none yet: that file is the one replaced
        path = path.resolve()
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        # mkstemp makes it 0600; FILE keeps its mode, or gets the umask's as open() gives it.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(fd, stat.S_IMODE(mode) if mode is not None else 0o666 & ~umask)
        with open(fd, "w", encoding="utf-8") as out:
            yield out
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


# Bidirectional embeddings, overrides and isolates: text after one reads in another order than
# it is written ("abc\u202eexe.txt" shows as "abctxt.exe").
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def shown(value: object) -> str:
    """``value`` as text a terminal shows as written: each control character (C0, DEL, C1:
    an escape sequence, a newline that fakes a row) and bidirectional override written as its
    Python escape (``\\x1b``, ``\\n``, ``\\u202e``). Alert labels, rule names and reasons come
    from outside; ``console()`` reads no markup, so brackets are shown as they are."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(
        c.encode("unicode_escape").decode("ascii")
        if c in _BIDI or unicodedata.category(c) == "Cc"
        else c
        for c in text
    )


def console() -> Console:
    """A rich console for tables; 160 columns wide when the output is not a terminal. It reads
    no markup: a value with ``[/bold]`` in it is shown as written (with markup, rich refused it,
    MarkupError, and ``[link=URL]text[/link]`` hid a link under the text); styles are given as
    ``Text`` styles."""
    # Created per command so CliRunner's captured stdout is the one written to.
    created = Console(highlight=False, soft_wrap=False, markup=False)
    if not created.is_terminal and "COLUMNS" not in os.environ:
        # Piped or captured output: rich would fold the tables at 80 columns.
        created = Console(highlight=False, soft_wrap=False, markup=False, width=160)
    return created


def print_listing(
    data: Any,
    key: str,
    columns: Sequence[str],
    cells: Callable[[dict[str, Any]], Sequence[str]],
    *,
    as_json: bool,
) -> None:
    """A server's page of ``key`` (``runs``, ``approvals``, ``events``...): its JSON when
    ``as_json``, else a table of ``columns`` with ``cells(row)`` for each row and, when the
    server has another page, the ``--cursor`` that fetches it; ``no <key>`` when there is
    none."""
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    page = data if isinstance(data, dict) else {}
    if not page.get(key) and not page.get("next_cursor"):
        # An empty table's header alone read as a listing that failed to arrive.
        console().print(f"no {key}")
        return
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in page.get(key) or []:
        if isinstance(row, dict):
            table.add_row(*(shown(cell) for cell in cells(row)))
    out = console()
    out.print(table)
    if page.get("next_cursor"):
        out.print(f"more: --cursor {shown(page['next_cursor'])}")
