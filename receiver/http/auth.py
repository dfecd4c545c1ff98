"""Who may call ``/api/``: the webhook's bearer token and/or basic-auth pair."""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from receiver.config import Settings
from receiver.http.responses import json_response

__all__ = ["Authenticator"]

REALM = 'realm="remediator"'


class Authenticator:
    """Bearer token and/or basic auth from the settings, compared in constant time on bytes.

    With neither configured, every request passes (``enabled`` is False).
    """

    def __init__(self, settings: Settings) -> None:
        self.token = (
            settings.webhook_token.get_secret_value().encode()
            if settings.webhook_token is not None
            else None
        )
        self.basic: tuple[bytes, bytes] | None = None
        if settings.webhook_username is not None and settings.webhook_password is not None:
            self.basic = (
                settings.webhook_username.encode(),
                settings.webhook_password.get_secret_value().encode(),
            )
        challenges = []
        if self.token is not None:
            challenges.append(f"Bearer {REALM}")
        if self.basic is not None:
            challenges.append(f"Basic {REALM}")
        self.challenge = ", ".join(challenges)

    @property
    def enabled(self) -> bool:
        """Whether any credentials are configured."""
        return self.token is not None or self.basic is not None

    def check(self, request: web.Request) -> bool:
        """Whether the request's Authorization header carries the configured credentials."""
        if not self.enabled:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "bearer" and self.token is not None:
            return hmac.compare_digest(credentials.encode(), self.token)
        if scheme == "basic" and self.basic is not None:
            try:
                decoded = base64.b64decode(credentials.encode(), validate=True)
            except (binascii.Error, ValueError):
                return False
            user, sep, password = decoded.partition(b":")
            # Both comparisons always run, so timing does not reveal which part was wrong.
            user_ok = hmac.compare_digest(user, self.basic[0])
            password_ok = hmac.compare_digest(password, self.basic[1])
            return bool(sep) and user_ok and password_ok
        return False

    def refuse(self) -> web.Response:
        """401 with the challenges of every configured scheme."""
        return json_response({"error": "unauthorized"}, 401, {"WWW-Authenticate": self.challenge})
