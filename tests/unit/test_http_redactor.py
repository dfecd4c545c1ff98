"""The redaction of a request's secrets from what a server answered (remediations/http/post.py,
``redactor``). Pure: the echoing server itself is tests/integration/test_http_echoed_secrets.py."""

from __future__ import annotations

import base64

from remediations.http.post import REDACTED, redactor


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
