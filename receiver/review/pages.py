"""The review's HTML pages: templates (``templates/*.html``, jinja2, autoescaped) and the
filters they format with.

Server-rendered, no JavaScript: the pages read the same in any browser and in a text dump.
Every value goes through jinja2's autoescaping, and only http(s) URLs become links
(``timeline.links_of``), so a label value or an annotation can put no markup or script on the
page. And every value printed shows the characters that show nothing and change how text
reads (bidirectional overrides and isolates, other format and control characters) as
``<U+202E>`` (``receiver.text.visible``, as the approval page does): an override ending an
alert's name turned the service's own words after it around ("on Deployment shop/api" read
backwards). A form field's value is the text typed (``typed``); a link's target is the address
the alert gave, what does not print percent-encoded (``links_of``). Links are relative to the
page (``root``: ``./`` or ``../``), so the pages work behind a reverse proxy that serves them
under any path prefix, with nothing to configure. The one inline
stylesheet carries a per-response nonce; the Content-Security-Policy
(``receiver.webpages.security_headers``) allows nothing else.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup, escape

from receiver.review.outcomes import present
from receiver.review.text import at_text, duration_text, pretty, unreadable_text, when_text
from receiver.text import visible
from receiver.webpages import template_environment

__all__ = ["ReviewPages"]


def _shown(value: Any) -> Any:
    """What ``{{ value }}`` prints: text as ``visible`` writes it; markup (a macro's output,
    made of values shown so already; a ``typed`` field) and other values as they are."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


class ReviewPages:
    """Renders ``templates/<name>.html``; built once, templates loaded by name."""

    def __init__(self) -> None:
        self._env = template_environment("receiver.review")
        # Set before any template is loaded: jinja2 compiles it into each template.
        self._env.finalize = _shown
        self._env.filters.update(
            at=at_text,
            when=when_text,
            dur=duration_text,
            pretty=pretty,
            present=present,
            unreadable=unreadable_text,
            typed=escape,  # a form field's value: the text typed, escaped, not shown otherwise
        )

    def render(self, name: str, *, nonce: str, root: str, **values: Any) -> str:
        """Page ``name`` with ``values``; ``root`` is the relative path from the page to the
        service's root (``./`` or ``../``), ``nonce`` marks the inline stylesheet."""
        return self._env.get_template(f"{name}.html").render(nonce=nonce, root=root, **values)
