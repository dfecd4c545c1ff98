"""The redaction of a request's secrets from what a server answered (remediations/http/post.py,
``redactor``). Pure: the echoing server itself is tests/integration/test_http_echoed_secrets.py."""

from __future__ import annotations

import base64

import pytest

from remediations.http.post import REDACTED, host_of, redactor


def test_a_basic_credential_is_redacted_as_sent_and_as_it_decodes() -> None:
    # A server that echoed the decoded credential (user:password) kept it in the step's
    # message and the audit log: only the base64 form was redacted.
    encoded = base64.b64encode(b"opsuser:BasicPassw0rdSecret").decode()
    redact = redactor("https://api.internal/flush", [f"Basic {encoded}"])
    echoed = f"auth={encoded} | decoded=opsuser:BasicPassw0rdSecret | pw=BasicPassw0rdSecret"
    out = redact(echoed)
    assert "BasicPassw0rdSecret" not in out
    assert encoded not in out
    assert out.count(REDACTED) == 3


def test_a_value_that_is_no_base64_is_redacted_as_it_is() -> None:
    redact = redactor("https://api.internal/flush", ["Basic not*base64!"])
    assert redact("echo: not*base64!") == f"echo: {REDACTED}"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://[::1]:8080/hook?token=x", "[::1]:8080"),
        ("https://[fd00::5]/hook", "[fd00::5]"),
        ("https://user:pw@hooks.example:8443/a/b", "hooks.example:8443"),
        ("http://10.0.0.1/x", "10.0.0.1"),
    ],
)
def test_the_host_named_in_messages_keeps_an_ipv6_address_in_brackets(url: str, shown: str) -> None:
    # "::1:8080" reads as an address, not as ::1 and port 8080.
    assert host_of(url) == shown
