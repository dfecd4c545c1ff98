"""Whether ``database.pooler`` and ``database.direct_url`` fit ``database_url`` (README,
"PgBouncer"). Pure: nothing here connects."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from pydantic import SecretStr

from receiver.config.inline import host_port
from receiver.config.settings import Settings

__all__ = ["check_database"]

# libpq's default port, when a URL names none.
_POSTGRES_PORT = 5432


def _endpoint(url: SecretStr) -> tuple[str, int] | None:
    """The one host and port a URL names; None when it names several, a socket (``?host=``),
    or none that can be read: nothing to compare then."""
    parts = urlsplit(url.get_secret_value())
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or "host" in parse_qs(parts.query):
        return None
    # None, not 0, is a port left out: ":0" is no libpq default to compare as 5432.
    return host, _POSTGRES_PORT if port is None else port


def check_database(settings: Settings, name: Callable[[str], str], given: set[str]) -> None:
    """A pooler or a direct URL only with an external database_url (``given``: the fields the
    user set), a transaction pooler only with a direct URL, and that URL not the pooler's own
    address: LISTEN through a transaction pooler is silently lost (the pooler hands the
    listening server connection to other clients), so the worker would only ever poll.
    ValueError naming, through ``name``, what to set or change; never a password."""
    if settings.database_url is None:
        for field in ("database_pooler", "database_direct_url"):
            if field in given and getattr(settings, field) != Settings.model_fields[field].default:
                raise ValueError(
                    f"{name(field)}: only with {name('database_url')} (the embedded PostgreSQL"
                    " is reached directly)"
                )
        return
    if not settings.transaction_pooled:
        return
    if settings.database_direct_url is None:
        raise ValueError(
            f"{name('database_direct_url')}: required with {name('database_pooler')}="
            f"{settings.database_pooler.value}: a direct connection to PostgreSQL (not through"
            " the pooler) for the worker's LISTEN, which a transaction pooler loses, and the"
            " audit commands"
        )
    pooler = _endpoint(settings.database_url)
    if pooler is not None and pooler == _endpoint(settings.database_direct_url):
        host, port = pooler
        raise ValueError(
            f"{name('database_direct_url')}: names {host_port(host, port)}, the pooler's address in"
            f" {name('database_url')}; it must reach PostgreSQL itself (the worker's LISTEN"
            " through the pooler is lost): give PostgreSQL's host and port"
        )
