"""Secrets the embedded default generates and keeps under its data directory.

Each secret is one line in a file of its own, mode 0600, created at the first start and read
back at every later one: the servers' passwords, and the service's webhook and operator tokens.
A file readable by anyone but its owner is refused rather than used: the secret may have leaked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from receiver.embedded.process import ServerError

__all__ = [
    "LOCAL_OPERATOR",
    "OPERATOR_TOKEN_FILE",
    "SECRET_FILE_MODE",
    "WEBHOOK_TOKEN_FILE",
    "scram_verifier",
    "secret_file",
]

# The service's generated credentials, under the data directory (names, not secrets). The
# operator token's owner is called ``local`` in the audit log.
WEBHOOK_TOKEN_FILE = "webhook-token"  # noqa: S105
OPERATOR_TOKEN_FILE = "operator-token"  # noqa: S105
LOCAL_OPERATOR = "local"

SECRET_FILE_MODE = 0o600
# 32 random bytes, URL-safe base64: no character needs quoting in a URL, a Redis config line or
# an SQL string literal.
_TOKEN_BYTES = 32


def secret_file(path: Path) -> str:
    """The secret kept in ``path``; a new random one is written first when the file is missing.

    Two processes starting at once agree on one secret: the file appears complete or not at all
    (written aside, then hard-linked into place, which fails if it already exists). Raises
    ServerError when the file is readable or writable by others, empty, or cannot be read.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _create(path, secrets.token_urlsafe(_TOKEN_BYTES))
    try:
        mode = path.stat().st_mode
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ServerError(f"cannot read the secret in {path}: {exc}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise ServerError(
            f"{path} is open to other users (mode {stat.S_IMODE(mode):04o}): the secret may have"
            f" leaked; delete the file to have a new one generated (or chmod 600 it)"
        )
    if not value:
        raise ServerError(f"{path} is empty; delete it to have a new secret generated")
    return value


def _create(path: Path, value: str) -> None:
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(value + "\n")
        # link() fails when another process created the file meanwhile: its secret wins.
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    finally:
        aside.unlink(missing_ok=True)


def scram_verifier(password: str, *, iterations: int = 4096) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802, RFC 7677).

    ``ALTER ROLE ... PASSWORD '<this>'`` stores it as is, so the password itself never reaches
    the server, its logs or its catalogs. The layout is PostgreSQL's own
    (``src/common/scram-common.c``): ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``.
    The password must be ASCII printable (SASLprep leaves such a password unchanged).
    """
    if not password.isascii() or not password.isprintable():
        raise ValueError("the password must be printable ASCII")
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"
