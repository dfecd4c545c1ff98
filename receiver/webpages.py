"""What every HTML page of the service shares: the jinja2 environment, the document skeleton
(``templates/document.html``) and the headers each page is sent with.

The approval links' confirmation page (``receiver.approvals``) and the review's pages
(``receiver.review``) keep their own templates and stylesheets; both extend the one skeleton,
whose inline ``<style>`` carries the per-response nonce that ``security_headers`` allows, and
nothing else: no scripts, no images, no third-party assets, no framing, forms posting only back
to the service.
"""

from __future__ import annotations

from jinja2 import ChoiceLoader, Environment, PackageLoader, select_autoescape

__all__ = ["security_headers", "template_environment"]


def security_headers(nonce: str) -> dict[str, str]:
    """Headers of every page: never cached (pages show who did what and hold CSRF tokens), no
    referrer leaves for another origin (a link's token stays here), nothing loaded from
    anywhere but the stylesheet marked with ``nonce``, not framed, forms post only to the
    service.

    ``same-origin``, not ``no-referrer``: under ``no-referrer`` a browser sends its own form's
    POST with ``Origin: null`` (the Fetch standard's request origin), and only Fetch Metadata
    (``Sec-Fetch-Site``) could then vouch for it, which browsers send to https and loopback
    addresses alone: served over http at any other address, every decision and sign-in from
    the service's own pages was refused as another site's (Chromium, seen). Other origins get
    no referrer under either."""
    return {
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Referrer-Policy": "same-origin",
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


def template_environment(package: str) -> Environment:
    """The templates of ``package`` (its ``templates/`` folder), autoescaped, able to extend
    ``document.html``; templates are loaded by name on first use."""
    return Environment(
        loader=ChoiceLoader(
            [PackageLoader(package, "templates"), PackageLoader("receiver", "templates")]
        ),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
