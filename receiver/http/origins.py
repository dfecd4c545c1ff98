"""Where a browser's request comes from: the checks that keep another site's page from
deciding an approval or logging in with what the browser carries by itself (cookies, the SSO
proxy's header)."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

__all__ = ["cross_site", "same_origin"]


def same_origin(request: web.Request, public_url: str | None) -> bool:
    """The POST came from our own page. A real Origin must be the service's (the public URL,
    else the request's own): the pages' ``Referrer-Policy: same-origin`` lets browsers send
    it with their forms (``webpages.security_headers``). ``Origin: null`` (a browser that
    still hides it) is believed only with Fetch Metadata's ``Sec-Fetch-Site: same-origin`` (a
    header no page can set); with neither, refuse."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site != "same-origin":
        return False
    origin = request.headers.get("Origin")
    if origin and origin != "null":
        return origin == _own_origin(request, public_url)
    return site == "same-origin"


def _own_origin(request: web.Request, public_url: str | None) -> str:
    if public_url:
        parts = urlsplit(public_url)
        return f"{parts.scheme}://{parts.netloc}"
    return f"{request.scheme}://{request.host}"


def cross_site(request: web.Request, public_url: str | None) -> bool:
    """A browser says this request was sent by another site's page: Fetch Metadata other than
    ``same-origin`` or ``none``, an Origin that is not the service's, or ``Origin: null``
    without Fetch Metadata vouching for it. A script (curl, the CLI) sends neither header.

    The SSO proxy adds its user header to whatever the browser sends it with the proxy's
    cookie, a form another site's page submits included: a decision on the API that only the
    SSO header authenticates must not come from another site (the link's page has its CSRF
    token for that; the API has none)."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if origin == "null":
        return site != "same-origin"
    return origin != _own_origin(request, public_url)
