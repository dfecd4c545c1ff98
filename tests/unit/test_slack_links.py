"""The links of a Slack announcement (remediations/notify/message.py): only http(s) pages, and
the alert's "source" link names the host it leads to. Whoever can post to Alertmanager's API
writes an alert's generatorURL; a "source" link to any URL, of any scheme, was a link dressed
as Prometheus's. Pure: the payload as built."""

from __future__ import annotations

import pytest

from remediations.base import AlertFacts
from remediations.notify.message import Event, Message, slack_payload


def links_of(generator_url: str, links: dict[str, str] | None = None) -> str:
    message = Message(
        event=Event.RUN_FINISHED,
        title="Remediation succeeded",
        text="",
        rule="restart",
        run_id="r1",
        outcome="succeeded",
        alert=AlertFacts(labels={"alertname": "X"}, status="firing", generator_url=generator_url),
        links=links or {},
    )
    context = [b for b in slack_payload(message)["blocks"] if b["type"] == "context"]
    return context[0]["elements"][0]["text"] if context else ""


def test_the_source_link_names_its_host() -> None:
    assert links_of("http://prometheus:9090/graph?g0.expr=up") == (
        "<http://prometheus:9090/graph?g0.expr=up|source (prometheus:9090)>"
    )
    # A user part before the host cannot pass for it.
    assert links_of("https://prometheus.example@evil.example/x") == (
        "<https://prometheus.example@evil.example/x|source (evil.example)>"
    )


@pytest.mark.parametrize(
    ("url", "host"),
    [
        # A browser reads a backslash as a slash in an http(s) URL (the URL Standard's
        # authority state): the link opens evil.example, which urlsplit read as a user part
        # and the link called "source (prometheus.internal)".
        ("https://evil.example\\@prometheus.internal/graph", "evil.example"),
        ("https://\\evil.example\\@prometheus.internal/", "evil.example"),
        ("https:///evil.example/@prometheus.internal", "evil.example"),
        # A Cyrillic o (U+043E) reads as Prometheus and is another host: named as DNS is asked.
        ("https://pr\u043emetheus.internal/graph", "xn--prmetheus-12h.internal"),
        ("https://pr%D0%BEmetheus.internal:9090/", "xn--prmetheus-12h.internal:9090"),
        ("https://prometheus.internal\uff0eevil.example/", "prometheus.internal.evil.example"),
        ("https://ev\til.example/", "evil.example"),
        ("https://[::1]:9090/graph", "[::1]:9090"),
        ("https://evil.example?@prometheus.internal", "evil.example"),
    ],
)
def test_the_source_link_names_the_host_a_browser_opens(url: str, host: str) -> None:
    assert links_of(url).endswith(f"|source ({host})>")


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "slack://open", "file:///etc/passwd", "ftp://h/x", "//h/x"]
)
def test_a_link_that_is_no_web_page_is_left_out(url: str) -> None:
    assert links_of(url) == ""
    assert links_of("", {"runbook": url, "run": "https://remediator.example/r1"}) == (
        "<https://remediator.example/r1|run>"
    )


@pytest.mark.parametrize("url", ["https://exa mple.com/", "http://[::1/graph", "https://a%00b.x/"])
def test_a_source_no_browser_opens_gets_no_link(url: str) -> None:
    """The URL Standard's parser refuses these: a browser opens no page, so no "source" link
    names a host it would not reach."""
    assert links_of(url) == ""
