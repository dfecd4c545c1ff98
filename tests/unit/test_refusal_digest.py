"""What a refusal digest says, its shape as Redis writes it, and its link to the runs (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from receiver.http.filters import run_filters
from receiver.model import RunOutcome
from receiver.refusal_digest import (
    Digest,
    by_guard_text,
    digest_audit,
    digest_text,
    digest_title,
    folded_detail,
    parse_digest,
    runs_link,
    window_id,
)
from receiver.review.model import AuditEntry
from receiver.review.notes import announced, service_note
from receiver.store.announcements import announced_data

GUARDS = ("pause", "namespace", "cooldown", "rate", "budget", "breaker", "lock", "template")

rules = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
channels = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
# Whole milliseconds, as Redis keeps them, within the years Python holds.
starts = st.integers(min_value=0, max_value=250_000_000_000_000).map(
    lambda ms: datetime.fromtimestamp(ms / 1000, UTC)
)
by_guards = st.dictionaries(st.sampled_from(GUARDS), st.integers(1, 100_000), min_size=1)


@st.composite
def digests(draw: st.DrawFn) -> Digest:
    by_guard = draw(by_guards)
    refused = sum(by_guard.values())
    targets = draw(st.integers(1, refused))
    examples = draw(
        st.lists(st.text(min_size=1, max_size=30), min_size=min(targets, 3), max_size=3)
    )
    start = draw(starts)
    return Digest(
        rule=draw(rules),
        channel=draw(channels),
        start=start,
        end=start + timedelta(seconds=draw(st.integers(1, 86400))),
        refused=refused,
        by_guard=by_guard,
        targets=targets,
        examples=tuple(examples[:targets]),
        opener="0b0e6d1c-6a8e-5f61-9a3e-1e7f3c2b4a59",
    )


def as_redis_writes_it(digest: Digest) -> str:
    """The JSON of lua/digest.lua: times as text in ms, an empty list as an object (cjson)."""
    return json.dumps(
        {
            "rule": digest.rule,
            "channel": digest.channel,
            "start": str(round(digest.start.timestamp() * 1000)),
            "end": str(round(digest.end.timestamp() * 1000)),
            "opener": digest.opener,
            "refused": digest.refused,
            "by_guard": dict(digest.by_guard),
            "targets": digest.targets,
            "examples": list(digest.examples) or {},
        }
    )


@given(digests())
def test_a_digest_reads_back_as_redis_wrote_it(digest: Digest) -> None:
    assert parse_digest(as_redis_writes_it(digest)) == digest


@given(by_guards)
def test_the_count_by_guard_names_each_guard_once_most_first(by_guard: dict[str, int]) -> None:
    text = by_guard_text(by_guard)
    parts = [part.rsplit(" ", 1) for part in text.split(", ")]
    assert {guard: int(n) for guard, n in parts} == by_guard
    counts = [int(n) for _, n in parts]
    assert counts == sorted(counts, reverse=True)


@given(digests())
def test_the_digest_says_how_many_by_guard_and_on_how_many_targets(digest: Digest) -> None:
    text = digest_text(digest)
    assert f" {digest.refused} more run" in text
    assert by_guard_text(digest.by_guard) in text
    assert f"\n{digest.targets} target" in text
    for example in digest.examples:
        assert example in text
    if digest.targets > len(digest.examples) > 0:
        assert f"and {digest.targets - len(digest.examples)} more." in text
    assert str(digest.refused) in digest_title(digest)
    assert digest.rule in digest_title(digest)


def test_one_refusal_is_said_in_the_singular() -> None:
    start = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    digest = Digest(
        rule="restart",
        channel="oncall",
        start=start,
        end=start + timedelta(minutes=5),
        refused=1,
        by_guard={"rate": 1},
        targets=1,
        examples=("Deployment/shop/a",),
    )
    assert digest_title(digest) == "Remediation refused 1 more time: restart"
    assert digest_text(digest) == (
        "From 2026-11-25T10:00:00Z to 2026-11-25T10:05:00Z, 1 more run of restart was refused "
        "after the one announced: rate 1.\n1 target: Deployment/shop/a."
    )


@given(digests())
def test_the_runs_link_is_a_query_the_runs_api_takes(digest: Digest) -> None:
    link = runs_link("https://remediator.example/", digest)
    parts = urlsplit(link)
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https",
        "remediator.example",
        "/api/v1/runs",
    )
    filters = run_filters(dict(parse_qsl(parts.query)), now=datetime.now(UTC))
    assert filters["rule"] == digest.rule
    assert filters["outcome"] is RunOutcome.REFUSED
    assert filters["since"] == digest.start
    assert runs_link("", digest) == ""


@given(rules, channels, starts)
def test_a_folded_refusal_names_its_window(rule: str, channel: str, start: datetime) -> None:
    end = start + timedelta(minutes=5)
    detail = folded_detail(rule, channel, start, end)
    assert window_id(rule, channel, start) in detail
    assert f"{rule} to {channel}" in detail
    assert window_id(rule, channel, start).rsplit(":", 1)[1] == str(round(start.timestamp() * 1000))


def test_anything_else_is_not_a_digest() -> None:
    for entry in ("", "[]", "{}", '{"rule": "r"}', "not json"):
        try:
            parse_digest(entry)
        except ValueError:
            continue
        raise AssertionError(f"{entry!r} was read as a digest")


def test_the_review_says_a_folded_refusal_was_folded_not_lost() -> None:
    start = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    data = announced_data(
        event="refused",
        channel="oncall",
        delivered=False,
        detail=folded_detail("restart", "oncall", start, start + timedelta(minutes=5)),
        digest=window_id("restart", "oncall", start),
    )
    kind, title, detail, tone = announced(data)
    assert (kind, tone) == ("notify", "neutral")
    assert title == "Announcement folded into the refusal digest: refused to oncall"
    assert "2026-11-25T10:05:00Z" in detail
    # A refusal that did not go out for another reason still reads as a warning.
    assert announced({**data, "digest": None})[3] == "warn"


@given(digests(), st.booleans())
def test_the_review_says_what_a_digest_told_the_channel(digest: Digest, delivered: bool) -> None:
    row = AuditEntry(
        1, digest.end, "announcements.digest", digest_audit(digest, delivered=delivered, detail="x")
    )
    title, detail, tone = service_note(row)
    assert f"{digest.refused} more refusals of {digest.rule}" in title
    assert ("sent" in title) is delivered
    assert f"{digest.targets} targets" in detail
    assert tone == ("neutral" if delivered else "warn")
