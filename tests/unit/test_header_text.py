"""``header_text``: a header as aiohttp decodes it (``surrogateescape``) becomes text the store
can hold, each byte that is not UTF-8 written U+FFFD, and UTF-8 text is left as it is."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from receiver.text import header_text


@given(st.binary(max_size=64))
def test_any_header_bytes_become_storable_text(raw: bytes) -> None:
    text = header_text(raw.decode("utf-8", "surrogateescape"))
    text.encode("utf-8")  # no lone surrogate left: PostgreSQL takes it
    assert len(text) == len(raw.decode("utf-8", "surrogateescape"))


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=32))
def test_utf8_text_is_kept_as_sent(value: str) -> None:
    assert header_text(value.encode().decode("utf-8", "surrogateescape")) == value


def test_each_byte_that_is_not_utf8_is_one_replacement() -> None:
    assert header_text(b"curl\xff/8 Jos\xe9".decode("utf-8", "surrogateescape")) == (
        "curl\ufffd/8 Jos\ufffd"
    )
