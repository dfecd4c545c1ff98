"""The external_url setting: kept in the form browsers name its origin (lowercase, no default
port, IP addresses as the WHATWG URL standard writes them), and refused when no approval or
login link can be built under it."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import ConfigError, load_settings
from tests.support.config import config


@pytest.mark.parametrize(
    ("written", "base"),
    [
        # A browser's Origin is the scheme and host in lowercase, without the default port:
        # the login and approval pages compare it as text with the external_url's.
        ("'HTTPS://Remediator.Example:443/'", "https://remediator.example"),
        ("'http://Remediator.Example:80'", "http://remediator.example"),
        ("'https://remediator.example:8443/ops/'", "https://remediator.example:8443/ops"),
        ("'http://[::1]:80/'", "http://[::1]"),
        # An IP address as the WHATWG URL standard serializes it: Origin: http://[::1]:9095
        # for http://[0:0:0:0:0:0:0:1]:9095; before, that spelling was kept, and the login
        # and approval pages refused every POST the browser sent.
        ("'http://[0:0:0:0:0:0:0:1]:9095'", "http://[::1]:9095"),
        ("'http://[2001:DB8:0:0:1:0:0:1]'", "http://[2001:db8::1:0:0:1]"),
        ("'http://[1:0:0:2:0:0:0:3]'", "http://[1:0:0:2::3]"),
        ("'http://[1:0:1:0:1:0:1:0]'", "http://[1:0:1:0:1:0:1:0]"),
        ("'http://[::FFFF:127.0.0.1]:9095'", "http://[::ffff:7f00:1]:9095"),
        ("'http://127.0.0.1.:9095/'", "http://127.0.0.1:9095"),
        ("'https://ops.example.'", "https://ops.example."),
        ("'https://1.2.3.4x'", "https://1.2.3.4x"),
        ("'https://ops.example/team%20a/'", "https://ops.example/team%20a"),
    ],
)
def test_external_url_is_kept_in_the_form_browsers_name_its_origin(
    tmp_path: Path, written: str, base: str
) -> None:
    settings = load_settings(config(tmp_path, f"external_url: {written}\n"), {})
    assert settings.external_url == base


@pytest.mark.parametrize(
    ("written", "message"),
    [
        # The link was `https://remediator.example/?tenant=a/approve/TOKEN`: the token in the
        # query, and the link opened another page.
        ("'https://remediator.example/?tenant=a'", "the URL has a query (?...)"),
        ("'https://remediator.example/ops?'", "the URL has a query (?...)"),
        ("'https://remediator .example'", "a blank, a control character"),
        ("'https://remediator.example/a\tb'", "a blank, a control character"),
        ("'https://remediator.example/a\\b'", "or a backslash"),
        # Accepted, and approval links were built under a path no proxy need take.
        ("'https://x.example/%zz'", "the URL's path holds '%zz', which is no percent-escape"),
        ("'https://x.example/ops/a%2'", "the URL's path holds '%2', which is no percent-escape"),
        ("'https://x.example/ops%'", "the URL's path holds '%', which is no percent-escape"),
        # Accepted, and a browser opened the links one directory up, or at the root: a dot
        # segment is resolved, however it is spelled, not sent.
        ("'https://x.example/%2e%2e/ops'", "the URL's path holds the segment '%2e%2e'"),
        ("'https://x.example/ops/.%2E'", "the URL's path holds the segment '.%2E'"),
        ("'https://x.example/ops/..'", "the URL's path holds the segment '..'"),
        ("'https://x.example/./ops'", "the URL's path holds the segment '.'"),
        ("'https://x.example/ops/%2E'", "the URL's path holds the segment '%2E'"),
        ("'https://remediator.example:99999'", "port is not a number from 1 to 65535"),
        ("'https://remediator.example:0'", "port is not a number from 1 to 65535"),
        ("'https://remediator.example:https'", "port is not a number from 1 to 65535"),
        ("'https://bücher.example'", "in its xn-- form"),
        # A browser reads each of these as another host than the text says (127.0.0.1,
        # 8.0.0.1, example.com) or does not open it (an IPv6 zone).
        ("'http://127.1:9095'", "as four decimal numbers"),
        ("'http://010.0.0.1'", "as four decimal numbers"),
        ("'http://0x7f.0.0.1'", "as four decimal numbers"),
        ("'http://ops.1'", "as four decimal numbers"),
        ("'http://ex%41mple.com'", "the URL's host holds a %"),
        ("'http://[fe80::1%25eth0]:9095'", "the URL's host holds a %"),
    ],
)
def test_an_external_url_no_link_can_be_built_under_is_refused(
    tmp_path: Path, written: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(config(tmp_path, f"external_url: {written}\n"), {})
    assert caught.value.message.startswith("external_url: "), caught.value.message
    assert message in caught.value.message
