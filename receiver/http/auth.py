"""Who may call ``/api/``, and as whom: the webhook credential and the operators' tokens.

Two roles, never mixed. The webhook credential (a bearer token and/or a basic-auth pair, what
Alertmanager sends) may only post alerts. Operators' tokens (named, read from files) may read
runs and the guards and pause or resume remediation, and the audit log names the operator.
A request with no valid credential gets 401; a valid credential of the other role gets 403.

A role with no credentials configured is open to everyone: the webhook when no webhook
credential is set (the service refuses that with external servers unless asked for), the
operator endpoints only when nothing at all is configured (a receiver run without any
authentication). Open, it still refuses (403) a request that changes something when a browser
says another site's page sent it (``origins.cross_site``): any page the operator's browser
opens could otherwise post an alert that acts, or drop a dead letter. Every comparison is of
SHA-256 digests with ``hmac.compare_digest``, against every configured credential, so neither
the time taken nor the length reveals which one came close.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
from enum import StrEnum

from aiohttp import web

from receiver.config import Settings
from receiver.config.operators import ANONYMOUS, WEBHOOK_NAME
from receiver.http.origins import cross_site
from receiver.http.responses import json_response

__all__ = [
    "ANONYMOUS",
    "PRINCIPAL",
    "WEBHOOK_NAME",
    "Authenticator",
    "Principal",
    "Role",
    "principal",
]

REALM = 'realm="remediator"'


class Role(StrEnum):
    WEBHOOK = "webhook"  # POST /api/v1/alerts and nothing else
    OPERATOR = "operator"  # every other /api/ endpoint


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: the role their credential has, and a name for the audit log
    (the operator's name, ``webhook``, or ``anonymous`` on an open role)."""

    role: Role
    name: str


# The webhook credential's caller: one value for every webhook (Principal is frozen), not a
# new one per request.
_WEBHOOK_CALLER = Principal(Role.WEBHOOK, WEBHOOK_NAME)

# The request key the middleware stores the caller's Principal under (every /api/ request).
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


def principal(request: web.Request) -> Principal:
    """The caller of an /api/ request, as the middleware identified them."""
    if PRINCIPAL not in request:
        raise RuntimeError("no principal on the request: is the edge middleware installed?")
    return request[PRINCIPAL]


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _encode(text: str) -> bytes:
    # aiohttp decodes header bytes that are not UTF-8 as surrogates; they must compare unequal,
    # not raise.
    return text.encode("utf-8", "surrogateescape")


# Methods that change nothing (RFC 9110 9.2.1): another site's page may send them, it cannot
# read the answer (no CORS header is ever sent).
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_CROSS_SITE = (
    "forbidden: a page of another site sent this, and this service takes requests without"
    " credentials (REMEDIATOR_ALLOW_UNAUTHENTICATED), so any page a browser opens could; call"
    " it from a script, or configure credentials (auth.token, auth.operator_tokens_dir)"
)


class Authenticator:
    """The configured credentials, compared in constant time; see the module docstring."""

    def __init__(self, settings: Settings) -> None:
        self._token = (
            _digest(_encode(settings.webhook_token.get_secret_value()))
            if settings.webhook_token is not None
            else None
        )
        self._basic: tuple[bytes, bytes] | None = None
        if settings.webhook_username is not None and settings.webhook_password is not None:
            self._basic = (
                _digest(_encode(settings.webhook_username)),
                _digest(_encode(settings.webhook_password.get_secret_value())),
            )
        self._public_url = settings.external_url or None
        self._operators = [
            (name, _digest(_encode(token.get_secret_value())))
            for name, token in sorted(settings.operator_tokens.items())
        ]
        challenges = []
        if self._token is not None:
            challenges.append(f"Bearer {REALM}")
        if self._basic is not None:
            challenges.append(f"Basic {REALM}")
        self._webhook_challenge = ", ".join(challenges)

    @property
    def webhook_open(self) -> bool:
        """No webhook credential is configured: anyone may post alerts."""
        return self._token is None and self._basic is None

    @property
    def operators_open(self) -> bool:
        """Nothing at all is configured: anyone may call the operator endpoints."""
        return self.webhook_open and not self._operators

    @property
    def operator_names(self) -> list[str]:
        """The configured operators' names, sorted (never their tokens)."""
        return [name for name, _ in self._operators]

    def identify(self, header: str) -> Principal | None:
        """The principal an Authorization header value proves, or None."""
        scheme, _, credentials = header.partition(" ")
        scheme = scheme.lower()
        given = _encode(credentials.strip())
        if scheme == "bearer" and given:
            digest = _digest(given)
            found: Principal | None = None
            # Every comparison runs; none is skipped once one matched.
            if self._token is not None and hmac.compare_digest(digest, self._token):
                found = _WEBHOOK_CALLER
            for name, token in self._operators:
                if hmac.compare_digest(digest, token):
                    found = Principal(Role.OPERATOR, name)
            return found
        if scheme == "basic" and self._basic is not None:
            try:
                decoded = base64.b64decode(given, validate=True)
            except (binascii.Error, ValueError):
                return None
            user, sep, password = decoded.partition(b":")
            # Both comparisons always run, so timing does not reveal which part was wrong.
            user_ok = hmac.compare_digest(_digest(user), self._basic[0])
            password_ok = hmac.compare_digest(_digest(password), self._basic[1])
            if sep and user_ok and password_ok:
                return _WEBHOOK_CALLER
        return None

    def authorize(self, request: web.Request, required: Role) -> Principal | web.Response:
        """The caller when their credential has the ``required`` role, else the answer:
        401 without a valid credential, 403 with a valid one of the other role."""
        found = self.identify(request.headers.get("Authorization", ""))
        if found is None:
            is_open = self.webhook_open if required is Role.WEBHOOK else self.operators_open
            if not is_open:
                return self._refuse(required)
            if request.method not in _SAFE and cross_site(request, self._public_url):
                # Open to any caller, so to a browser another site's page drives: a form or a
                # fetch it sends needs no credential to post an alert that acts, or to drop a
                # dead letter. A script sends no Origin nor Fetch Metadata, and is let in.
                return json_response({"error": _CROSS_SITE}, 403)
            return Principal(required, ANONYMOUS)
        if found.role is not required:
            takes = "the webhook credential" if required is Role.WEBHOOK else "an operator token"
            article = "an" if str(found.role)[0] in "aeiou" else "a"
            message = (
                f"forbidden: {article} {found.role} credential cannot call this endpoint ({takes})"
            )
            return json_response({"error": message}, 403)
        return found

    def _refuse(self, required: Role) -> web.Response:
        """401 with the challenges of the schemes the endpoint takes."""
        challenge = self._webhook_challenge if required is Role.WEBHOOK else f"Bearer {REALM}"
        return json_response(
            {"error": "unauthorized"}, 401, {"WWW-Authenticate": challenge or f"Bearer {REALM}"}
        )
