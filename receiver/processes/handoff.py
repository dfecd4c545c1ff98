"""What ``serve`` hands a worker process it starts: its settings as ``serve`` resolved them
(secrets read, the embedded servers' credentials put in), where the stores are, its number,
the Unix socket it answers its metrics on, and the texts of the rule files ``serve`` runs on
(its last good rules: the files may hold errors since, and a worker process started again
after a crash then starts as ``serve`` runs, rather than not at all).

Sent over the child's standard input as one pickle, length-prefixed, never on its command line
or in its environment (which other processes of the same user can read: ``/proc/PID/environ``,
``ps``). Pickle, not a settings file or JSON: the settings hold validated values (durations,
secrets, paths) that would be validated again, and differently, from their printed form; both
ends are the same code, started by one another. The standard input then stays open: its end of
file tells the child that the process that started it is gone (``child``).

At each rules reload ``serve`` writes the texts it runs on then (its last good rules, whether
the reload took or not) to ``rules_path``, in the sockets' directory (mode 0700), and sends
SIGHUP: a worker process reloads those, never the directory as it is when the signal comes
(later, a busy process), which may have changed since, or hold an error ``serve``'s reload did
not see, and left the process on rules ``serve`` no longer ran until the next good reload.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from receiver.assembly import Endpoints
from receiver.config import Settings

__all__ = [
    "Handoff",
    "HandoffError",
    "encoded",
    "process_name",
    "read_handoff",
    "read_rules",
    "rules_path",
    "write_rules",
]

_LENGTH = struct.Struct(">I")
# A handoff is the settings (a few kB) and the rule files' texts, which the loader bounds at
# MAX_FILE_BYTES (4 MiB) a file but not in number. 256 MiB is 64 such files, over 100,000 rules
# as the shipped ones are written, that PyYAML (a few hundred KB a second) would take a quarter
# of an hour to compile at each start and reload of serve: far past a rule set serve runs on.
# A larger one is refused by `encoded`, saying what to do. Reading, the bound still tells a
# stray write to the pipe from a handoff: printable text read as a length is 512 MiB or more.
_MOST_BYTES = 256 * 2**20


def process_name(index: int) -> str:
    """How the logs name worker process ``index`` (1 and up): ``worker-1``."""
    return f"worker-{index}"


class HandoffError(RuntimeError):
    """The standard input did not hold a handoff (the process was not started by ``serve``),
    or a handoff is too large to hand (``encoded``)."""


@dataclass(frozen=True, slots=True)
class Handoff:
    """A worker process's start: ``index`` (1 and up; 0 is the process that takes the
    webhooks), ``metrics_socket`` (the Unix socket its metrics are read from), ``rule_files``
    (the texts of the rules ``serve`` runs on, by file path: ``RuleHolder.files``)."""

    settings: Settings
    endpoints: Endpoints
    index: int
    metrics_socket: Path
    rule_files: dict[str, str]


def encoded(handoff: Handoff) -> bytes:
    """``handoff`` as the child reads it: a 4-byte big-endian length, then the pickle. Raises
    HandoffError, saying what to do, when it is larger than a child reads (``_MOST_BYTES``)."""
    body = pickle.dumps(handoff, protocol=pickle.HIGHEST_PROTOCOL)
    if len(body) > _MOST_BYTES:
        rules_mib = sum(len(text.encode()) for text in handoff.rule_files.values()) / 2**20
        raise HandoffError(
            f"the rule files come to {rules_mib:.0f} MiB, more than a worker process can be"
            f" handed ({_MOST_BYTES // 2**20} MiB): make them smaller, or run the worker in"
            " serve's process alone (worker.processes 1)"
        )
    return _LENGTH.pack(len(body)) + body


def read_handoff(stream: BinaryIO) -> Handoff:
    """Read one handoff from ``stream`` (blocking). Raises HandoffError when the stream ends
    early, or holds something else than ``encoded`` wrote."""
    head = _read_exactly(stream, _LENGTH.size)
    (length,) = _LENGTH.unpack(head)
    if length > _MOST_BYTES:
        raise HandoffError(f"a handoff of {length} bytes: not one `serve` wrote")
    try:
        handoff = pickle.loads(_read_exactly(stream, length))  # noqa: S301 - from our parent
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, TypeError) as exc:
        raise HandoffError(f"unreadable handoff: {exc}") from None
    if not isinstance(handoff, Handoff):
        raise HandoffError(f"a handoff of type {type(handoff).__name__}: not one `serve` wrote")
    return handoff


def rules_path(metrics_socket: Path) -> Path:
    """Where ``serve`` writes the rules it reloaded: beside the worker processes' sockets."""
    return metrics_socket.parent / "rules.json"


def write_rules(path: Path, texts: Mapping[str, str]) -> None:
    """Write ``texts`` (``RuleHolder.files``) to ``path`` whole, as a JSON object (text by path:
    nothing a pickle is needed for, and nothing a reader must trust to load): to a file beside
    it, renamed over it, so that a process reading it meanwhile reads the old texts or the new
    ones. Raises HandoffError when they are larger than a child reads (``_MOST_BYTES``),
    OSError when the file cannot be written."""
    body = json.dumps(dict(texts)).encode()
    if len(body) > _MOST_BYTES:
        raise HandoffError(
            f"the rule files come to {len(body) / 2**20:.0f} MiB, more than a worker process"
            f" can be handed ({_MOST_BYTES // 2**20} MiB): make them smaller"
        )
    partial = path.with_name(path.name + ".new")
    partial.write_bytes(body)
    os.replace(partial, path)


def read_rules(path: Path) -> dict[str, str] | None:
    """The texts ``write_rules`` wrote to ``path``; None when there are none (no reload by
    ``serve`` yet). Raises HandoffError when the file cannot be read or holds something else."""
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HandoffError(f"the rules serve reloaded cannot be read: {exc}") from None
    try:
        texts = json.loads(body)
    except ValueError as exc:  # not UTF-8, or not JSON
        raise HandoffError(f"unreadable rules from serve: {exc}") from None
    if not isinstance(texts, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in texts.items()
    ):
        raise HandoffError("the rules serve reloaded are not rule texts by path")
    return texts


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            raise HandoffError(
                "standard input ended before a handoff: a worker process is started by"
                " `remediator serve` (worker.processes), not on its own"
            )
        data += chunk
    return data
