"""A PostgreSQL session that calls a function through the fast-path interface (libpq's
``PQfn``, the protocol's FunctionCall message): asyncpg cannot send one, libpq can, so the
tests load the libpq beside the server's binaries (else the system's) with ctypes.

While the call runs, ``pg_stat_activity`` shows the backend in state ``fastpath function
call``, with ``query`` and ``query_start`` still those of the session's previous statement.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from pathlib import Path

__all__ = ["FastPathSession", "find_libpq"]

_CONNECTION_OK = 0
_PGRES_COMMAND_OK = 1
_PGRES_TUPLES_OK = 2


class _ArgValue(ctypes.Union):
    _fields_ = [("ptr", ctypes.c_void_p), ("integer", ctypes.c_int)]


class _ArgBlock(ctypes.Structure):
    # libpq-fe.h's PQArgBlock: {int len; int isint; union {int *ptr; int integer;} u;}
    _fields_ = [("len", ctypes.c_int), ("isint", ctypes.c_int), ("u", _ArgValue)]


def find_libpq(bin_dir: Path | None) -> Path | None:
    """libpq beside the server's ``bin_dir`` (``../lib``), else the system's; None without."""
    if bin_dir is not None:
        for name in ("libpq.so.5", "libpq.so", "libpq.dylib"):
            if (bin_dir.parent / "lib" / name).is_file():
                return bin_dir.parent / "lib" / name
    found = ctypes.util.find_library("pq")
    return Path(found) if found else None


class FastPathSession:
    """One libpq connection. Blocking calls: run them in a thread from async code."""

    def __init__(self, libpq: Path, url: str) -> None:
        self._lib = ctypes.CDLL(str(libpq))
        self._lib.PQconnectdb.restype = ctypes.c_void_p
        self._lib.PQconnectdb.argtypes = [ctypes.c_char_p]
        self._lib.PQstatus.argtypes = [ctypes.c_void_p]
        self._lib.PQerrorMessage.restype = ctypes.c_char_p
        self._lib.PQerrorMessage.argtypes = [ctypes.c_void_p]
        self._lib.PQexec.restype = ctypes.c_void_p
        self._lib.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        self._lib.PQresultStatus.argtypes = [ctypes.c_void_p]
        self._lib.PQresultErrorMessage.restype = ctypes.c_char_p
        self._lib.PQresultErrorMessage.argtypes = [ctypes.c_void_p]
        self._lib.PQclear.argtypes = [ctypes.c_void_p]
        self._lib.PQbackendPID.argtypes = [ctypes.c_void_p]
        self._lib.PQfinish.argtypes = [ctypes.c_void_p]
        self._lib.PQfn.restype = ctypes.c_void_p
        self._lib.PQfn.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_int),
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_int,
            ctypes.POINTER(_ArgBlock),
            ctypes.c_int,
        ]
        self._conn = self._lib.PQconnectdb(url.encode())
        if self._lib.PQstatus(self._conn) != _CONNECTION_OK:
            error = self._lib.PQerrorMessage(self._conn).decode()
            self.close()
            raise ConnectionError(f"libpq could not connect: {error}")

    @property
    def pid(self) -> int:
        """The server process id of this session."""
        return int(self._lib.PQbackendPID(self._conn))

    def execute(self, sql: str) -> str:
        """Run ``sql`` (simple query); its error message, "" when it succeeded."""
        return self._finish(self._lib.PQexec(self._conn, sql.encode()))

    def call_float8(self, function_oid: int, value: float) -> str:
        """Call the function ``function_oid`` with one float8 argument through the fast path
        (PQfn sends arguments in binary: a float8 is 8 bytes, big-endian); its error
        message, "" when it returned."""
        data = ctypes.create_string_buffer(struct.pack(">d", value), 8)
        arg = _ArgBlock(len=8, isint=0, u=_ArgValue(ptr=ctypes.cast(data, ctypes.c_void_p)))
        out, out_len = (ctypes.c_int * 2)(), ctypes.c_int(0)
        result = self._lib.PQfn(
            self._conn, function_oid, out, ctypes.byref(out_len), 0, ctypes.byref(arg), 1
        )
        return self._finish(result)

    def _finish(self, result: int | None) -> str:
        if not result:
            return self._lib.PQerrorMessage(self._conn).decode() or "no result"
        try:
            if self._lib.PQresultStatus(result) in (_PGRES_COMMAND_OK, _PGRES_TUPLES_OK):
                return ""
            return str(self._lib.PQresultErrorMessage(result).decode())
        finally:
            self._lib.PQclear(result)

    def close(self) -> None:
        """End the connection (PQfinish)."""
        if self._conn:
            self._lib.PQfinish(self._conn)
            self._conn = None
