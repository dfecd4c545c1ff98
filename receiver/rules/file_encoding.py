"""A rule or rule test file's bytes as text, or where and why they are not UTF-8. Pure.

The bare ``not valid UTF-8 (byte 17)`` named neither a line nor what to do; a file saved as
UTF-16 (Windows editors' "Unicode", which starts with a byte-order mark) or in Latin-1 (an
``é`` as the single byte 0xE9) is the usual cause, and what to do is the same: save it as UTF-8.
"""

from __future__ import annotations

import codecs

__all__ = ["NotUtf8", "decode_rule_file"]

# Longest first: UTF-32's little-endian mark begins with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


class NotUtf8(ValueError):
    """The file is not UTF-8: ``line`` (1-based) holds the first byte that is not, and
    ``message`` says which byte, where in the line, and to save the file as UTF-8."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


_WIDE = (
    "the file has a NUL byte in its first four bytes, as UTF-16 or UTF-32 text without a "
    "byte-order mark does: save it as UTF-8"
)


def decode_rule_file(data: bytes) -> str:
    """``data`` (a whole file) decoded as UTF-8. A UTF-8 byte-order mark is kept (the YAML
    reader skips it); a UTF-16 or UTF-32 one, or a NUL in the first four bytes, is refused at
    line 1. Raises ``NotUtf8`` naming the line, the byte (its offset in the file and its
    column in the line in characters, both 1-based) and the fix."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise NotUtf8(
                1, f"the file is {name} (it starts with a byte-order mark): save it as UTF-8"
            )
    if b"\x00" in data[:4]:
        # Valid UTF-8 when its characters are ASCII, and then told of as a control character
        # U+0000 on line 1; no YAML file holds a raw NUL.
        raise NotUtf8(1, _WIDE)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        start = exc.start
    line_start = data.rfind(b"\n", 0, start) + 1
    line = data.count(b"\n", 0, start) + 1
    # In characters, as an editor counts: all before ``start`` decoded.
    column = len(data[line_start:start].decode("utf-8")) + 1
    raise NotUtf8(
        line,
        f"not valid UTF-8: byte 0x{data[start]:02X} at column {column} (byte {start + 1} of "
        "the file); save the file as UTF-8 (was it saved as Latin-1 or another encoding?)",
    )
