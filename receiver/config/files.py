"""Files a setting names: secrets (a token, a password, a DSN), one per file or one per file in
a directory, read stripped and never quoted in a message."""

from __future__ import annotations

import errno
from pathlib import Path

from pydantic import SecretStr

from receiver.config.settings import ConfigError

__all__ = [
    "FILE_NOT_UTF8",
    "MAX_CONFIG_FILE_BYTES",
    "PATH_NOT_SHOWN",
    "path_shown",
    "read_file",
    "read_secret",
    "read_settings_text",
    "read_text_bounded",
    "secret_files",
]

FILE_NOT_UTF8 = "it is not UTF-8 text: save it as UTF-8"

# A settings, approvers or secret file larger than this is refused unread: the settings file
# the project ships is 6 kB, and a 10 MB one (a log named by mistake) took 7 s of YAML parsing
# before it was refused for its first unknown key; /dev/zero would never end.
MAX_CONFIG_FILE_BYTES = 2**20


def read_text_bounded(path: Path) -> str:
    """The UTF-8 text of ``path``, reading at most ``MAX_CONFIG_FILE_BYTES`` + 1 bytes.

    Raises OSError as reading does, one (EFBIG) saying the file is too large, and
    UnicodeDecodeError when it is not UTF-8 (callers say so without quoting the bytes)."""
    with path.open("rb") as file:
        data = file.read(MAX_CONFIG_FILE_BYTES + 1)
    if len(data) > MAX_CONFIG_FILE_BYTES:
        raise OSError(
            errno.EFBIG,
            f"larger than {MAX_CONFIG_FILE_BYTES // 2**20} MiB: is it the right file?",
        )
    return data.decode("utf-8")


# What a message adds in place of a path that names nothing (``path_shown``).
PATH_NOT_SHOWN = (
    "(its path not shown: nothing is there, nor the directory it names, so it may be the"
    " secret itself, written where its file's path goes)"
)


def path_shown(path: Path) -> bool:
    """Whether a message may show ``path`` (a file or directory a setting names, which cannot
    be read): when something is there, or the directory it names is (a misspelt file name).
    A secret given where its file goes (``REMEDIATOR_WEBHOOK_TOKEN_FILE=<the token>``, a DSN
    as ``dsn_file``) names nothing, and was quoted whole in the error, which a pod's log
    keeps; the message says ``PATH_NOT_SHOWN`` instead. An absolute path below a directory
    that is there (``/etc/remediator/secrets/token``, its Secret's volume not mounted) is a
    path: that was hidden too, where the user needed it. The root alone says nothing."""
    try:
        if path.exists() or path.is_symlink():
            return True
        if path.parent != Path() and path.parent.is_dir():
            return True
        return path.is_absolute() and any(above.is_dir() for above in path.parents[:-1])
    except OSError:  # a name too long for a path: no file's
        return False


def read_settings_text(path: Path) -> str:
    """The text of the settings file (``--config``, ``REMEDIATOR_CONFIG``). Raises ConfigError
    naming the file when it cannot be read, is too large or is not UTF-8."""
    try:
        return read_text_bounded(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: cannot read config file: {FILE_NOT_UTF8}") from None


def read_file(path: Path, source: str, what: str = "secret file") -> str:
    """The text of the file a setting names, stripped (secrets mounted from Kubernetes end
    with a newline). Raises ConfigError naming ``source`` (the setting the user wrote) and
    the file, never its content, when it cannot be read, is empty or holds U+0000. A byte order
    mark at its start (Notepad's "UTF-8 with BOM") is not part of it: kept, it made a token the
    server refused with a bare 401."""
    try:
        value = read_text_bounded(path).removeprefix("\ufeff").strip()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        if not path_shown(path):
            raise ConfigError(f"{source}: cannot read {what}: {why} {PATH_NOT_SHOWN}") from None
        raise ConfigError(f"{source}: cannot read {what} {path}: {why}") from None
    except UnicodeDecodeError:
        # Not the decoder's message: it quotes the byte and its offset, a piece of the secret.
        raise ConfigError(f"{source}: cannot read {what} {path}: {FILE_NOT_UTF8}") from None
    if not value:
        raise ConfigError(f"{source}: {what} {path} is empty")
    if "\0" in value:
        # No token, password, DSN or URL holds one (PostgreSQL and HTTP headers cannot carry
        # it): the file is most likely not the one meant, and a secret that can never match
        # would only show later as every caller refused or every connection failing.
        raise ConfigError(
            f"{source}: {what} {path} contains a NUL character (U+0000), which is not allowed: "
            "is it the right file?"
        )
    return value


def read_secret(path: Path, source: str) -> SecretStr:
    """``read_file`` kept as a ``SecretStr``: never shown by ``repr()`` or in logs."""
    return SecretStr(read_file(path, source))


def secret_files(directory: Path, source: str) -> list[Path]:
    """The files of a directory of secrets, one secret per file, sorted by name. Entries whose
    names start with a dot are skipped: a mounted Kubernetes Secret keeps its real files behind
    ``..data`` and the like, and shows each key as a plain name. Raises ConfigError naming
    ``source`` when ``directory`` is not a directory."""
    if not directory.is_dir():
        if not path_shown(directory):
            raise ConfigError(f"{source}: it is not a directory {PATH_NOT_SHOWN}")
        raise ConfigError(f"{source}: {directory} is not a directory")
    return [e for e in sorted(directory.iterdir()) if not e.name.startswith(".") and e.is_file()]
