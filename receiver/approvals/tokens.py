"""Signed approval links: which approval, for which plan, until when. Never who approves.

    token = <kid> "." <itsdangerous URL-safe payload "." HMAC-SHA256 signature>
    payload = {"v": 1, "kid", "aid": approval id, "ph": plan hash, "exp": unix seconds, "jti"}

Keys come from files, several at once, each under its key id (research/alertmanager-protocol.md
§5.2): the newest key id (the greatest in natural order, ``_natural``: name them by date or a
counter) signs, and every key listed verifies, so keys rotate by adding the new file first and
removing the old one once the links it signed have expired. A key that is removed stops
verifying at once. Signing and checking are itsdangerous' (HMAC-SHA256, constant-time
comparison); the expiry is checked against the server's clock here and again by the store
(``expires_at``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from itsdangerous import BadSignature, URLSafeSerializer

from receiver.approvals.state import ApprovalError, ApprovalExpired

__all__ = [
    "KEY_ID",
    "MIN_KEY_BYTES",
    "KeyRing",
    "LinkTokens",
    "TokenClaims",
    "TokenRefused",
    "link_expired",
]

# Key ids go into the token before the first dot, so they are URL-safe and dot-free.
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# 256-bit keys, e.g. `openssl rand -hex 32` (64 characters) in each file.
MIN_KEY_BYTES = 32
_SALT = "approval-link-v1"
_VERSION = 1


class TokenRefused(ApprovalError):
    """The link is forged, tampered with, signed by a key that is not (or no longer) listed,
    or malformed. Deliberately says no more than that."""

    status = 403

    def __init__(self, message: str = "this approval link is not valid") -> None:
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a verified link says: the approval, the plan it was signed for, its expiry, the
    key that signed it and the token's own id (recorded with a decision)."""

    approval_id: str
    plan_hash: str
    expires_at: datetime
    kid: str
    jti: str


def link_expired(claims: TokenClaims) -> ApprovalExpired:
    """The refusal of a link past its expiry (410)."""
    return ApprovalExpired(
        f"this approval link expired at {claims.expires_at.isoformat()}; nothing was changed"
    )


def _natural(kid: str) -> tuple[tuple[int, int | str], ...]:
    """``kid`` in natural order: its runs of digits compare as numbers, so ``k10`` comes after
    ``k9`` (as text it came before, and ``k9`` kept signing after ``k10`` was added)."""
    return tuple(
        (0, int(part)) if part.isdigit() else (1, part)
        for part in re.split(r"([0-9]+)", kid)
        if part
    )


class KeyRing:
    """Signing keys by key id. Raises ValueError for an empty ring, a bad key id or a short
    key (the message names the key id, never the key)."""

    def __init__(self, keys: Mapping[str, bytes]) -> None:
        if not keys:
            raise ValueError("no approval signing keys")
        for kid, key in keys.items():
            if not KEY_ID.fullmatch(kid):
                raise ValueError(f"approval key id {kid!r}: use letters, digits, - and _ only")
            if len(key) < MIN_KEY_BYTES:
                raise ValueError(
                    f"approval key {kid!r} is {len(key)} bytes; use at least {MIN_KEY_BYTES} "
                    "(e.g. `openssl rand -hex 32`)"
                )
        self._keys = dict(keys)
        self.signing_kid = max(self._keys, key=_natural)

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def kids(self) -> list[str]:
        return sorted(self._keys)

    def serializer(self, kid: str) -> URLSafeSerializer:
        """itsdangerous' serializer for ``kid`` (KeyError when it is not listed)."""
        return URLSafeSerializer(
            self._keys[kid],
            salt=_SALT,
            signer_kwargs={"key_derivation": "hmac", "digest_method": hashlib.sha256},
        )

    def __repr__(self) -> str:
        return f"KeyRing(kids={self.kids()})"  # never the keys


class LinkTokens:
    """Issues and verifies approval link tokens with a ``KeyRing`` and a clock."""

    def __init__(
        self, ring: KeyRing, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._ring = ring
        self._clock = clock

    @property
    def ring(self) -> KeyRing:
        return self._ring

    def issue(self, approval_id: str, plan_hash: str, expires_at: datetime) -> str:
        """A token for ``approval_id`` bound to ``plan_hash``, valid until ``expires_at``."""
        kid = self._ring.signing_kid
        payload = {
            "v": _VERSION,
            "kid": kid,
            "aid": approval_id,
            "ph": plan_hash,
            "exp": int(expires_at.timestamp()),
            "jti": secrets.token_urlsafe(9),
        }
        signed = self._ring.serializer(kid).dumps(payload)
        assert isinstance(signed, str)
        return f"{kid}.{signed}"

    def verify(self, token: str, *, expired_ok: bool = False) -> TokenClaims:
        """The claims of a valid, unexpired token (with ``expired_ok``, an expired one's too:
        a decision sent from it is refused by the desk, which records who tried). Raises
        TokenRefused (forged, tampered, unknown or rotated-out key, malformed) or
        ApprovalExpired."""
        kid, sep, signed = token.partition(".")
        if not sep or not KEY_ID.fullmatch(kid) or kid not in self._ring:
            raise TokenRefused()
        try:
            payload = self._ring.serializer(kid).loads(signed)
        except BadSignature:
            raise TokenRefused() from None
        if (
            not isinstance(payload, dict)
            or payload.get("v") != _VERSION
            or payload.get("kid") != kid
            or not isinstance(payload.get("aid"), str)
            or not isinstance(payload.get("ph"), str)
            or not isinstance(payload.get("exp"), int)
            or not isinstance(payload.get("jti"), str)
        ):
            raise TokenRefused()
        try:
            expires_at = datetime.fromtimestamp(payload["exp"], UTC)
        except (OverflowError, ValueError, TypeError, OSError):
            # Signed with our key but with an expiry no date can hold (10**20, -10**15, 2**70):
            # only a bug or a leaked key makes one, and it is refused as any other bad link
            # rather than escaping as a 500.
            raise TokenRefused() from None
        claims = TokenClaims(payload["aid"], payload["ph"], expires_at, kid, payload["jti"])
        if not expired_ok and self.expired(claims):
            raise link_expired(claims)
        return claims

    def expired(self, claims: TokenClaims) -> bool:
        """Whether the link of ``claims`` is past its expiry by this clock."""
        return claims.expires_at <= self._clock()
