"""The host a browser opens for a link an alert carries. Pure."""

from __future__ import annotations

import ada_url

__all__ = ["web_host"]


def web_host(url: str) -> str | None:
    """The host (and port) a browser opens for the http(s) ``url``, as the URL Standard
    (url.spec.whatwg.org, "basic URL parser") finds it, by ada (``ada-url``, the parser Node.js
    uses): a ``\\`` read as ``/``, the host after the last ``@``, percent-decoded, a label that
    is not ASCII as the ``xn--`` name DNS is asked for. None when a browser opens no page for it
    (the Standard's parser refuses it). ``urlsplit`` read ``https://evil.example\\@prometheus/``
    as host ``prometheus``, where a browser goes to evil.example, and ``pr\\u043emetheus`` (a
    Cyrillic o) reads as Prometheus but is another host: every host is shown as one no other
    host looks like."""
    try:
        return str(ada_url.URL(url).host)
    except ValueError:
        return None
