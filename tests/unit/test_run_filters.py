"""The runs list's filters (receiver/http/filters.py, ``run_filters``): a target given in a
shape that can match no run is a 400 saying the shape, never an empty list. Pure."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from receiver.http.filters import BadParameter, parse_since, run_filters
from remediations.targets import Target

NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("given", "read"),
    [
        ("Deployment/shop/web", Target("Deployment", "shop", "web")),
        ("HttpEndpoint/hook", Target("HttpEndpoint", "", "hook")),
        ("RedisQueue/jobs/emails", Target("RedisQueue", "", "jobs/emails")),
    ],
)
def test_a_target_key_is_read_as_the_runs_store_it(given: str, read: Target) -> None:
    assert run_filters({"target": given}, NOW)["target"] == read


@pytest.mark.parametrize("given", ["HttpEndpoint//hook", "RedisQueue//jobs/emails"])
def test_an_empty_namespace_for_a_kind_without_one_is_refused(given: str) -> None:
    # It used to be read as the name "/hook": an empty list, whatever runs there were.
    kind = given.split("/")[0]
    with pytest.raises(BadParameter) as caught:
        run_filters({"target": given}, NOW)
    assert caught.value.parameter == "target"
    assert caught.value.message == (
        f"a {kind} has no namespace: write {kind}/{given.split('//', 1)[1]}"
    )


def test_an_empty_namespace_and_no_name_says_what_to_write() -> None:
    with pytest.raises(BadParameter) as caught:
        run_filters({"target": "HttpEndpoint//"}, NOW)
    assert caught.value.message == "a HttpEndpoint has no namespace: write HttpEndpoint/name"


NOW = datetime(2026, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "read"),
    [
        ("0000-12-31T23:30:00-01:00", datetime(1, 1, 1, 0, 30, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", datetime(1, 1, 1, tzinfo=UTC)),
    ],
)
def test_a_since_of_year_1_in_utc_is_read_even_written_in_year_0(text: str, read: datetime) -> None:
    # As intake reads a time of year 0 (alertmanager.parse_rfc3339): RFC 3339 allows it.
    assert parse_since(text, NOW) == read


@pytest.mark.parametrize("text", ["0000-06-01T00:00:00Z", "0000-12-31T23:59:59Z"])
def test_a_since_before_the_year_1_in_utc_is_refused_saying_so(text: str) -> None:
    with pytest.raises(ValueError, match="is outside the years 1 to 9999 once in UTC"):
        parse_since(text, NOW)


def test_a_long_parameter_is_not_echoed_whole() -> None:
    """A name or value as long as the request line came back whole in the 400."""
    long = "x" * 5000
    for query in ({long: "1"}, {"outcome": long}, {"since": long}, {"limit": long}):
        with pytest.raises(BadParameter) as caught:
            run_filters(query, NOW)
        assert "x" * 100 not in caught.value.message, caught.value.message
        assert len(caught.value.parameter) <= 80, caught.value.parameter
    with pytest.raises(BadParameter, match=r"^unknown parameter 'x{76}\.\.\.$"):
        run_filters({long: "1"}, NOW)
