"""What an error may say of a URL with credentials (receiver/config/redact.py): never a part of
its password, even one the URL parsers split in the wrong place. Pure."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from receiver.config.redact import HIDDEN, misread, redacted, unreadable
from receiver.config.values import url_shape

# The security review's passwords: a `?`, `/` or `#` that is not percent-encoded made asyncpg
# and redis-py quote the rest of the password as a query field or a port.
MISREAD = [
    "postgresql://remediator:Sec?retPW11@127.0.0.1:55245/remediator",
    "postgresql://remediator:Sec/retPW9@127.0.0.1:55245/remediator",
    "postgresql://remediator:Ab#SecretPW10@127.0.0.1:5/x",
    "postgresql://remediator:123/abcSECRET@127.0.0.1:5/x",
    "redis://:Red/isSecretPW3@127.0.0.1:40317/0",
    "redis://:Redis?SecretPW6@127.0.0.1:1/0",
]


def _password(url: str) -> str:
    return url[url.index("://") + 3 : url.rindex("@")].partition(":")[2]


@pytest.mark.parametrize("url", MISREAD)
def test_a_password_the_parsers_would_misread_is_never_quoted(url: str) -> None:
    message = misread("PostgreSQL", url)
    assert message is not None
    assert "percent-encode" in message
    # What the client said of it before: the fragment it took for a port or a query field.
    client = ValueError(f"invalid literal for int() with base 10: {url.split(':')[2][:3]!r}")
    said = unreadable("PostgreSQL", url, client)
    password = _password(url)
    for start in range(len(password) - 2):
        assert password[start : start + 3] not in said
    with pytest.raises(ValueError, match="percent-encode") as caught:
        url_shape(SecretStr(url), ("postgresql", "redis"), "PostgreSQL")
    assert password[:3] not in str(caught.value)


def test_a_url_read_as_written_keeps_the_clients_reason_without_its_password() -> None:
    url = "postgresql://u:pa%2Fss@db:5432/x?sslmode=bogus"
    assert misread("PostgreSQL", url) is None
    said = unreadable("PostgreSQL", url, ValueError(f"bad sslmode in {url} (pa/ss)"))
    assert said.startswith("not a PostgreSQL URL: bad sslmode in postgresql://u:***@db")
    assert "pa/ss" not in said
    assert "pa%2Fss" not in said


@given(
    password=st.text(alphabet="ab1/#?@:%!", min_size=1, max_size=12),
    encode=st.booleans(),
)
def test_any_password_is_misread_or_read_whole(password: str, encode: bool) -> None:
    """Either the URL reads as written (the parsers find the whole password, so redacting it
    from any message is exact) or it is refused in general terms."""
    written = quote(password, safe="") if encode else password
    url = f"postgresql://user:{written}@db.internal:5432/app"
    if misread("PostgreSQL", url) is None:
        assert urlsplit(url).password == written
        assert "@" not in written
        said = redacted(f"could not use {url}", url)
        # Either the message, the password nowhere in it, or none of it (a short password
        # inside its words too: HIDDEN, which quotes nothing).
        assert said == HIDDEN or (written not in said and password not in said)
        if said != HIDDEN:
            assert said.startswith("could not use postgresql://user:***@db.internal:5432/app")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://u:pw@127.0.0.1:99999/db", "Port out of range 0-65535"),
        ("postgresql://u:pw@127.0.0.1:notaport/db", "'notaport'"),
        ("redis://:pw@127.0.0.1:-1/0", "Port"),
    ],
)
def test_a_port_that_is_no_port_is_said_before_a_client_reads_it(url: str, says: str) -> None:
    # asyncpg raised OverflowError or ValueError from deep in its connect (a traceback from
    # migrate, audit and test).
    message = misread("PostgreSQL", url)
    assert message is not None
    assert says in message
    assert "pw" not in message


def test_a_dsn_of_several_hosts_is_not_misread() -> None:
    assert misread("PostgreSQL", "postgresql://u:pw@db1:5432,db2:5433/app") is None


def test_an_at_sign_after_the_host_is_refused_with_its_way_out() -> None:
    # Indistinguishable from a password with an unencoded `/` or `?` before an `@`: refused,
    # and the message says how to write it so that it reads as meant.
    message = misread("PostgreSQL", "postgresql://u:pw@db:5432/app?application_name=ops@prod")
    assert message is not None
    assert "an `@` after the host" in message
    assert (
        misread("PostgreSQL", "postgresql://u:pw@db:5432/app?application_name=ops%40prod") is None
    )


@pytest.mark.parametrize(
    ("password", "message", "said"),
    [
        # Inside words: every *** marked a place of the password (the fresh tester's find).
        ("p", "invalid sslmode parameter: bogus", HIDDEN),
        ("pass", "password authentication failed for user x", HIDDEN),
        # Standing alone (a URL, a quote): replaced, the rest of the message kept.
        (
            "pass",
            "cannot use postgresql://u:pass@db/x ('pass')",
            "cannot use postgresql://u:***@db/x ('***')",
        ),
        # Nowhere in it: the message as it is.
        ("zq9", "invalid sslmode parameter: bogus", "invalid sslmode parameter: bogus"),
        # Long: replaced wherever it is, as before.
        ("hunter2hunter2", "xhunter2hunter2y", "x***y"),
    ],
)
def test_a_short_password_is_never_marked_inside_a_word(
    password: str, message: str, said: str
) -> None:
    assert redacted(message, f"postgresql://u:{password}@db:5432/x") == said
