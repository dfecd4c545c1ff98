"""Browser sessions of the review pages: an operator token exchanged once for a signed cookie.

The cookie holds the operator's name, a random id and when it was issued, signed with itsdangerous
(HMAC-SHA256, ``URLSafeTimedSerializer``); it is good for ``max_age_s`` and only while that
operator is still configured. The signing key is derived from every operator's token
(SHA-256 over the sorted name=token pairs, with a purpose string): every replica with the same
operators computes the same key with nothing more to configure, no cookie can be made without
knowing every token, and changing any token signs everyone out. The cookie is set HttpOnly and
SameSite=Strict by the HTTP edge (``receiver.http.pages``).

Signing out records the cookie's ``session_digest`` in the store until the cookie would have
expired (``receiver.store.signouts``), and a page refuses a cookie recorded there: clearing
it in the browser alone left every copy of it good for up to ``max_age_s``.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping

from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import SecretStr

__all__ = ["SESSION_COOKIE", "SESSION_MAX_AGE_S", "Sessions", "session_digest"]

SESSION_COOKIE = "remediator_review_session"
SESSION_MAX_AGE_S = 12 * 3600
_PURPOSE = b"alert-remediator review session v1\0"


def session_digest(cookie: str) -> bytes:
    """What a sign-out records of ``cookie`` (32 bytes, SHA-256): the cookie itself, which
    signs anyone in who holds it, is never stored."""
    return hashlib.sha256(cookie.encode()).digest()


class Sessions:
    """Issues and reads session cookies for the operators in ``operators`` (name -> token).
    With no operator there is no key and no session: ``issue`` raises ValueError."""

    def __init__(
        self, operators: Mapping[str, SecretStr], *, max_age_s: int = SESSION_MAX_AGE_S
    ) -> None:
        self._names = frozenset(operators)
        self.max_age_s = max_age_s
        self._serializer: URLSafeTimedSerializer | None = None
        if operators:
            material = b"\0".join(
                f"{name}={token.get_secret_value()}".encode()
                for name, token in sorted(operators.items())
            )
            key = hashlib.sha256(_PURPOSE + material).digest()
            self._serializer = URLSafeTimedSerializer(
                key, salt="review-session", signer_kwargs={"digest_method": hashlib.sha256}
            )

    def issue(self, name: str) -> str:
        """A cookie value for operator ``name``."""
        if self._serializer is None or name not in self._names:
            raise ValueError(f"no operator {name!r} to sign a session for")
        # A random id of its own: two sign-ins in the same second would otherwise be one
        # cookie (the timestamp counts seconds), and signing out of one ended both.
        value = self._serializer.dumps({"op": name, "id": secrets.token_urlsafe(12)})
        assert isinstance(value, str)
        return value

    def read(self, cookie: str | None) -> str | None:
        """The operator a cookie is for, if it is ours, unexpired and they are still one."""
        if not cookie or self._serializer is None:
            return None
        try:
            data = self._serializer.loads(cookie, max_age=self.max_age_s)
        except BadSignature:  # SignatureExpired is a BadSignature
            return None
        name = data.get("op") if isinstance(data, dict) else None
        return name if isinstance(name, str) and name in self._names else None
