"""Signed approval links and the page's CSRF tokens: pure, with a clock passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeSerializer

from receiver.approvals.page import CsrfTokens
from receiver.approvals.state import ApprovalExpired
from receiver.approvals.tokens import KeyRing, LinkTokens, TokenRefused

K1 = b"k1-" + b"a" * 40
K2 = b"k2-" + b"b" * 40
NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
AID = "5b0f0c8e-2a5e-4a57-9b8e-000000000001"
HASH = "ab" * 32


def tokens(keys: dict[str, bytes], now: datetime = NOW) -> LinkTokens:
    return LinkTokens(KeyRing(keys), lambda: now)


def test_a_link_carries_approval_plan_and_expiry_and_never_the_approver() -> None:
    link = tokens({"k1": K1}).issue(AID, HASH, NOW + timedelta(minutes=30))
    claims = tokens({"k1": K1}).verify(link)
    assert (claims.approval_id, claims.plan_hash, claims.kid) == (AID, HASH, "k1")
    assert claims.expires_at == NOW + timedelta(minutes=30)
    kid, signed = link.split(".", 1)
    payload = URLSafeSerializer(b"x").load_payload(signed.rsplit(".", 1)[0].encode())
    assert kid == "k1"
    assert set(payload) == {"v", "kid", "aid", "ph", "exp", "jti"}


def test_forged_token_is_refused() -> None:
    forged = "k1." + URLSafeSerializer(b"not the key" * 4, salt="approval-link-v1").dumps(
        {"v": 1, "kid": "k1", "aid": AID, "ph": HASH, "exp": 2**40, "jti": "x"}
    )
    with pytest.raises(TokenRefused):
        tokens({"k1": K1}).verify(forged)
    for junk in ("", "k1", "k1.", "nokid", "k1.e30.e30", "../k1.abc"):
        with pytest.raises(TokenRefused):
            tokens({"k1": K1}).verify(junk)


def test_tampered_token_is_refused() -> None:
    """The plan hash (or anything) changed after signing: the signature no longer matches."""
    link = tokens({"k1": K1}).issue(AID, HASH, NOW + timedelta(minutes=30))
    kid, signed = link.split(".", 1)
    payload, signature = signed.rsplit(".", 1)
    other = tokens({"k1": K1}).issue(AID, "cd" * 32, NOW + timedelta(minutes=30))
    swapped = f"{kid}.{other.split('.', 1)[1].rsplit('.', 1)[0]}.{signature}"
    with pytest.raises(TokenRefused):
        tokens({"k1": K1}).verify(swapped)
    flipped = (
        f"{kid}.{payload}.{signature[:-2]}{'A' if signature[-2] != 'A' else 'B'}{signature[-1]}"
    )
    with pytest.raises(TokenRefused):
        tokens({"k1": K1}).verify(flipped)


def test_expired_token_is_refused_by_the_server_clock() -> None:
    link = tokens({"k1": K1}).issue(AID, HASH, NOW + timedelta(minutes=30))
    assert tokens({"k1": K1}, NOW + timedelta(minutes=29)).verify(link)
    with pytest.raises(ApprovalExpired):
        tokens({"k1": K1}, NOW + timedelta(minutes=30)).verify(link)


@pytest.mark.parametrize("exp", [10**20, -(10**15), 2**70])
def test_a_signed_link_whose_expiry_no_date_can_hold_is_refused(exp: int) -> None:
    """Signed with the real key, so only the expiry is wrong: converting it raised
    OverflowError/ValueError out of verify, and the link page answered 500."""
    ring = KeyRing({"k1": K1})
    payload = {"v": 1, "kid": "k1", "aid": AID, "ph": HASH, "exp": exp, "jti": "x"}
    link = "k1." + str(ring.serializer("k1").dumps(payload))
    with pytest.raises(TokenRefused, match="not valid"):
        LinkTokens(ring, lambda: NOW).verify(link)


def test_wrong_key_is_refused() -> None:
    link = tokens({"k1": K1}).issue(AID, HASH, NOW + timedelta(minutes=30))
    with pytest.raises(TokenRefused):
        tokens({"k1": K2}).verify(link)  # same key id, another key
    relabelled = "k2." + link.split(".", 1)[1]
    with pytest.raises(TokenRefused):
        tokens({"k1": K1, "k2": K2}).verify(relabelled)  # the kid names the key that checks


def test_keys_rotate_newest_signs_all_listed_verify_removed_stops() -> None:
    old_link = tokens({"k1": K1}).issue(AID, HASH, NOW + timedelta(minutes=30))
    both = tokens({"k1": K1, "k2": K2})
    new_link = both.issue(AID, HASH, NOW + timedelta(minutes=30))
    assert new_link.startswith("k2.")
    assert both.verify(old_link).kid == "k1"
    assert both.verify(new_link).kid == "k2"
    rotated = tokens({"k2": K2})
    assert rotated.verify(new_link).kid == "k2"
    with pytest.raises(TokenRefused):
        rotated.verify(old_link)


def test_key_ring_refuses_short_keys_and_bad_ids_without_showing_keys() -> None:
    with pytest.raises(ValueError, match="at least 32") as short:
        KeyRing({"k1": b"short-secret"})
    assert "short-secret" not in str(short.value)
    with pytest.raises(ValueError, match="letters, digits"):
        KeyRing({"k.1": K1})
    with pytest.raises(ValueError, match="no approval signing keys"):
        KeyRing({})
    assert "aaaa" not in repr(KeyRing({"k1": K1}))


def test_csrf_token_is_bound_to_approval_session_and_person() -> None:
    csrf = CsrfTokens(KeyRing({"k1": K1}))
    token = csrf.issue(AID, "session-1", "alice")
    assert csrf.check(token, AID, "session-1", "alice")
    assert not csrf.check(token, AID.replace("1", "2"), "session-1", "alice")
    assert not csrf.check(token, AID, "session-2", "alice")
    assert not csrf.check(token, AID, "session-1", "mallory")
    assert not csrf.check(token, AID, "", "alice")
    assert not csrf.check("", AID, "session-1", "alice")
    assert not CsrfTokens(KeyRing({"k1": K2})).check(token, AID, "session-1", "alice")


def test_the_greatest_key_id_in_natural_order_signs() -> None:
    # As text "k9" sorted after "k10": the old key went on signing once k10 was added.
    key = b"k" * 32
    assert KeyRing({"k9": key, "k10": key}).signing_kid == "k10"
    assert KeyRing({"k2": key, "k10": key, "k1": key}).signing_kid == "k10"
    assert KeyRing({"2026-01-09": key, "2026-01-10": key}).signing_kid == "2026-01-10"
    assert KeyRing({"a": key, "b2": key, "b10": key}).signing_kid == "b10"
