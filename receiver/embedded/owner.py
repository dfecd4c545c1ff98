"""Who owns a data directory's embedded servers, and where they listen.

One process at a time starts and stops the servers under a data directory: the one holding an
exclusive ``flock`` on ``DATA_DIR/embedded.lock``. The kernel drops that lock when the process
dies, however it dies, so a lock that can be taken proves the previous owner is gone, and only
then are servers it left behind stopped. The owner describes itself in ``DATA_DIR/embedded.json``
(mode 0600, replaced atomically): its pid and command, the servers' ports once they answer, and
the HTTP address of ``serve``. Another process on the same directory reads that record to use
the running servers, to refuse naming the owner, or (the CLI) to learn which server the
directory's operator token belongs to. Passwords are not in the record; they are in their own
files beside it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from receiver.embedded.process import ServerError, process_exists

__all__ = [
    "LOCK_FILE",
    "RECORD_FILE",
    "DataDirBusy",
    "OwnerLock",
    "OwnerRecord",
    "live_owner",
    "read_record",
    "write_record",
]

LOCK_FILE = "embedded.lock"
RECORD_FILE = "embedded.json"


@dataclasses.dataclass(frozen=True, slots=True)
class OwnerRecord:
    """What the owner of a data directory says about itself (``embedded.json``).

    ``ready`` is False while its servers start; the ports are None for a server it did not
    start. ``http_url`` is where ``serve`` answers (None for other commands).
    """

    pid: int
    command: str
    ready: bool = False
    postgres_port: int | None = None
    redis_port: int | None = None
    http_url: str | None = None

    def describe(self) -> str:
        """``PID 1234 (remediator serve)``, for messages."""
        return f"PID {self.pid} ({self.command})"


class DataDirBusy(ServerError):
    """Another live process owns the data directory's embedded servers; the message names it
    and says what to do."""

    def __init__(self, data_dir: Path, owner: OwnerRecord | None, hint: str) -> None:
        who = owner.describe() if owner is not None else "another process"
        super().__init__(f"the data directory {data_dir} is in use by {who}: {hint}")
        self.owner = owner


class OwnerLock:
    """The exclusive lock on ``data_dir/embedded.lock``, held for as long as this object owns
    the directory. Not shared between threads of one process: each object opens its own."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock without waiting; False when another open file holds it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        # The pid in the lock file is for people; programs read embedded.json.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock


def _lock_is_held(data_dir: Path) -> bool:
    """Whether some process holds the directory's lock (probed with a shared lock, let go at
    once; an owner starting in that instant retries, see EmbeddedServices)."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def read_record(data_dir: Path) -> OwnerRecord | None:
    """The record as last written, or None when there is none or it cannot be read (it is
    not proof that its process still runs: see ``live_owner``)."""
    try:
        data: Any = json.loads((data_dir / RECORD_FILE).read_text(encoding="utf-8"))
        fields = {f.name for f in dataclasses.fields(OwnerRecord)}
        return OwnerRecord(**{k: v for k, v in data.items() if k in fields})
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def write_record(data_dir: Path, record: OwnerRecord | None) -> None:
    """Replace the record atomically (None removes it). Only the lock's holder writes it."""
    path = data_dir / RECORD_FILE
    if record is None:
        path.unlink(missing_ok=True)
        return
    aside = path.with_name(f".{RECORD_FILE}.{os.getpid()}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(dataclasses.asdict(record), fh)
        os.replace(aside, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            aside.unlink()


def live_owner(data_dir: Path) -> OwnerRecord | None:
    """The record of the process that owns the directory now, or None when nobody does (no
    lock held, or a record left by a process that is gone)."""
    record = read_record(data_dir)
    if record is None or not process_exists(record.pid) or not _lock_is_held(data_dir):
        return None
    return record
