"""Who is asking, from an authenticated source only: an operator token, or the SSO proxy's header.

``IdentityResolver`` turns what a request carries into an ``Identity`` (or None):

- ``Authorization: Bearer <operator token>`` (or a token typed into the confirmation page):
  the operator whose token it is, compared in constant time against every configured token.
- the SSO proxy's user header (e.g. ``X-Forwarded-User``), only when one is configured and only
  from a peer in the trusted proxy networks: anyone else could set that header themselves.

Slack identities come from ``receiver.approvals.slack`` (a verified interaction, mapped). The
resolver is a small interface on purpose: ``lookup_token`` may be any ``token -> name``
function, e.g. the service's operator-token table.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from multidict import MultiMapping
from pydantic import SecretStr

from receiver.approvals.policy import Identity
from receiver.text import has_lone_surrogate

__all__ = ["IdentityResolver", "TokenLookup", "token_table"]

# token -> operator name, None when the token is no operator's.
TokenLookup = Callable[[str], str | None]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def token_table(operators: Mapping[str, SecretStr]) -> TokenLookup:
    """A ``TokenLookup`` over ``{name: token}``: every token is compared (constant time each),
    so the time taken does not tell which one nearly matched. The SHA-256 digests are compared,
    not the tokens: ``hmac.compare_digest`` returns at once when the lengths differ, which told
    a token's length (the API's edge compares digests too)."""
    entries = [
        (name, hashlib.sha256(token.get_secret_value().encode()).digest())
        for name, token in operators.items()
    ]

    def lookup(token: str) -> str | None:
        found = None
        # aiohttp decodes header bytes that are not UTF-8 as lone surrogates: a token holding
        # one must compare unequal (401), not raise (500). No valid token contains any.
        given = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        for name, expected in entries:
            if hmac.compare_digest(given, expected):
                found = name
        return found

    return lookup


class IdentityResolver:
    """See the module docstring. ``sso_header`` None: SSO identities are not accepted."""

    def __init__(
        self,
        lookup_token: TokenLookup,
        *,
        sso_header: str | None = None,
        trusted_proxies: tuple[Network, ...] = (),
    ) -> None:
        self._lookup = lookup_token
        self.sso_header = sso_header
        self._trusted = trusted_proxies

    def from_token(self, token: str | None) -> Identity | None:
        """The operator a bearer token belongs to."""
        if not token:
            return None
        name = self._lookup(token.strip())
        return None if name is None else Identity(name, "operator-token", name)

    def trusted_peer(self, peer: str | None) -> bool:
        """Whether ``peer`` (an IP address) is one of the trusted proxies. An IPv4-mapped
        IPv6 address (``::ffff:10.0.0.1``) is its IPv4 address: a socket listening on ``::``
        sees IPv4 peers so, and some proxies write their hops so; as IPv6 it was in no IPv4
        network, and a trusted proxy's own hop was taken for the client."""
        if peer is None:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._trusted)

    def from_sso(self, headers: Mapping[str, Any], peer: str | None) -> Identity | None:
        """The SSO proxy's user, when configured and the request came through the proxy. The
        header given more than once with different names names nobody: a proxy that adds its
        line (HAProxy's ``add-header``) rather than setting it passes the client's own first,
        and the first was believed, so anyone it signed in could name any approver. Which line
        is the proxy's cannot be told, so none is. Nor does a name holding a byte that is not
        UTF-8 (aiohttp reads it as a lone surrogate): no approver is named so, a refusal naming
        it could not be recorded, and replacing the byte could make two people one."""
        if self.sso_header is None or not self.trusted_peer(peer):
            return None
        lines = (
            headers.getall(self.sso_header, [])
            if isinstance(headers, MultiMapping)
            else [headers.get(self.sso_header)]
        )
        users = {str(line or "").strip() for line in lines}
        if len(users) != 1:
            return None
        user = users.pop()
        if not user or has_lone_surrogate(user):
            return None
        return Identity(user, "sso", user)

    def from_headers(self, headers: Mapping[str, Any], peer: str | None) -> Identity | None:
        """An operator's bearer token first, else the SSO header."""
        scheme, _, credentials = str(headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "bearer":
            return self.from_token(credentials)
        return self.from_sso(headers, peer)

    def source_ip(self, headers: Mapping[str, Any], peer: str | None) -> str | None:
        """Where a request came from: when a trusted proxy forwarded it, the last
        X-Forwarded-For hop that is not a trusted proxy (the first when all are), else the peer.

        A proxy appends the address it was reached from to the X-Forwarded-For the client
        sent, so only the hops the trusted proxies appended can be believed: the first hop
        was whatever the client wrote (``X-Forwarded-For: 6.6.6.6`` made the audit of a
        decision say it came from 6.6.6.6). Every X-Forwarded-For line counts, in order (RFC
        9110 section 5.3: they are one list): HAProxy's ``option forwardfor`` adds a line of
        its own after the client's, and only the first line was read, the client's. A hop
        written with a port (``7.7.7.7:5555``, ``[2001:db8::7]:443``, as some proxies write
        it) is its address."""
        lines = (
            headers.getall("X-Forwarded-For", [])
            if isinstance(headers, MultiMapping)
            else [headers.get("X-Forwarded-For") or ""]
        )
        if not any(lines) or not self.trusted_peer(peer):
            return peer
        hops = [_address(hop) for line in lines for hop in str(line).split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self.trusted_peer(hop):
                return hop
        return hops[0] if hops else peer


def _address(hop: str) -> str:
    """``hop`` of an X-Forwarded-For without its port, if it has one; else stripped as is."""
    hop = hop.strip()
    bracketed = re.fullmatch(r"\[([^\]]*)\](?::\d+)?", hop)
    if bracketed:
        return bracketed.group(1)
    address, colon, port = hop.rpartition(":")
    if colon and "." in address and ":" not in address and port.isdigit():
        return address  # IPv4 with a port; a bare IPv6 address has colons of its own
    return hop
