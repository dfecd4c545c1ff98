"""The review's HTML pages: templates (``templates/*.html``, jinja2, autoescaped) and the
filters they format with.

Server-rendered, no JavaScript: the pages read the same in any browser and in a text dump.
Every value goes through jinja2's autoescaping, and only http(s) URLs become links
(``timeline.links_of``), so a label value or an annotation can put no markup or script on the
page. Links are relative to the page (``root``: ``./`` or ``../``), so the pages work behind a
reverse proxy that serves them under any path prefix, with nothing to configure. The one inline
stylesheet carries a per-response nonce; the Content-Security-Policy
(``receiver.webpages.security_headers``) allows nothing else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from receiver.review.outcomes import present
from receiver.review.text import at_text, duration_text, pretty, unreadable_text
from receiver.webpages import template_environment

__all__ = ["ReviewPages"]


def _when(value: str | None) -> str:
    """An RFC 3339 text of the report's data, for people."""
    if not value:
        return ""
    try:
        return at_text(datetime.fromisoformat(value))
    except ValueError:
        return value


class ReviewPages:
    """Renders ``templates/<name>.html``; built once, templates loaded by name."""

    def __init__(self) -> None:
        self._env = template_environment("receiver.review")
        self._env.filters.update(
            at=at_text,
            when=_when,
            dur=duration_text,
            pretty=pretty,
            present=present,
            unreadable=unreadable_text,
        )

    def render(self, name: str, *, nonce: str, root: str, **values: Any) -> str:
        """Page ``name`` with ``values``; ``root`` is the relative path from the page to the
        service's root (``./`` or ``../``), ``nonce`` marks the inline stylesheet."""
        return self._env.get_template(f"{name}.html").render(nonce=nonce, root=root, **values)
