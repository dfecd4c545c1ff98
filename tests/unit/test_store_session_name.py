"""What the store's sessions call themselves (receiver/store/session_name.py): always a name
the session actions spare (it begins with ``alert-remediator``), one PostgreSQL keeps whole
(63 bytes at most, whole characters), and the operator's own name kept after it."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from receiver.store.session_name import store_session_settings

URL = "postgres://remediator@db:5432/remediator"


def test_no_name_given_is_the_services() -> None:
    assert store_session_settings(URL) == {"application_name": "alert-remediator"}


def test_a_name_given_is_kept_after_the_services() -> None:
    named = store_session_settings(URL + "?sslmode=disable&application_name=replica-b")
    assert named == {"application_name": "alert-remediator:replica-b"}


def test_a_name_that_begins_so_already_is_kept_as_it_is() -> None:
    named = store_session_settings(URL + "?application_name=alert-remediator-eu")
    assert named == {"application_name": "alert-remediator-eu"}


def test_a_long_name_is_cut_on_a_characters_edge() -> None:
    name = store_session_settings(URL + "?application_name=" + quote("é" * 40))
    text = name["application_name"]
    assert len(text.encode()) == 63  # "alert-remediator:" is 17 bytes, 23 é 46 more
    assert text == "alert-remediator:" + "é" * 23


@given(st.text(max_size=100))
def test_any_name_given_still_begins_with_the_services(given_name: str) -> None:
    text = store_session_settings(URL + "?application_name=" + quote(given_name))[
        "application_name"
    ]
    assert text.startswith("alert-remediator")
    assert len(text.encode()) <= 63
