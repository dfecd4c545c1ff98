"""The review pages' session cookies (pure: itsdangerous, no I/O)."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from receiver.review.sessions import Sessions, session_digest

OPERATORS = {"alice": SecretStr("alice-token-0123456789"), "bob": SecretStr("bob-token-0123456")}


def test_a_session_names_its_operator() -> None:
    sessions = Sessions(OPERATORS)
    cookie = sessions.issue("alice")
    assert sessions.read(cookie) == "alice"
    # Another replica with the same operators reads it too: nothing else to share.
    assert Sessions(OPERATORS).read(cookie) == "alice"
    assert "alice-token" not in cookie


def test_a_session_is_refused_when_forged_expired_or_its_operators_changed() -> None:
    sessions = Sessions(OPERATORS)
    cookie = sessions.issue("bob")
    assert sessions.read(cookie[:-2] + ("AA" if not cookie.endswith("AA") else "BB")) is None
    assert sessions.read("") is None
    assert sessions.read(None) is None
    assert Sessions(OPERATORS, max_age_s=-1).read(cookie) is None
    # A token changed or an operator removed: every session signed before is void.
    assert Sessions({**OPERATORS, "bob": SecretStr("bob-new-token-98765")}).read(cookie) is None
    assert Sessions({"alice": OPERATORS["alice"]}).read(cookie) is None


def test_no_operator_no_session() -> None:
    sessions = Sessions({})
    assert sessions.read("anything") is None
    with pytest.raises(ValueError, match="no operator"):
        sessions.issue("alice")
    with pytest.raises(ValueError, match="no operator"):
        Sessions(OPERATORS).issue("mallory")


def test_a_session_is_signed_with_hmac_sha256_as_the_readme_says() -> None:
    # itsdangerous signs with HMAC-SHA1 unless told otherwise: 27 characters of signature.
    # SHA-256 gives 43, and a cookie signed the old way is not read.
    cookie = Sessions(OPERATORS).issue("alice")
    assert len(cookie.rsplit(".", 1)[1]) == 43
    sha1 = Sessions(OPERATORS)
    assert sha1._serializer is not None
    sha1._serializer.signer_kwargs = {}
    old = sha1.issue("alice")
    assert len(old.rsplit(".", 1)[1]) == 27
    assert Sessions(OPERATORS).read(old) is None


def test_each_sign_in_is_a_session_of_its_own() -> None:
    # Signed out by its digest: two sign-ins in one second were one cookie, and ended together.
    sessions = Sessions(OPERATORS)
    first, second = sessions.issue("alice"), sessions.issue("alice")
    assert first != second
    assert session_digest(first) != session_digest(second)
    assert sessions.read(first) == sessions.read(second) == "alice"
