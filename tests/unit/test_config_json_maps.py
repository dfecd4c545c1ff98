"""The four maps a variable gives as JSON (REMEDIATOR_POSTGRES_DATABASES, _REDIS_QUEUES,
_HTTP_ENDPOINTS, _NOTIFY_CHANNELS): an empty one, or JSON that is not an object, is refused
saying which, in JSON's words. Empty, it read as "Expecting value: line 1 column 1 (char 0)",
as if the JSON were wrong; an array as pydantic's "Input should be a valid dictionary"."""

from __future__ import annotations

import pytest

from receiver.config import ConfigError, load_settings

MAPS = [
    "REMEDIATOR_POSTGRES_DATABASES",
    "REMEDIATOR_REDIS_QUEUES",
    "REMEDIATOR_HTTP_ENDPOINTS",
    "REMEDIATOR_NOTIFY_CHANNELS",
]


def refusal(env: str, value: str) -> str:
    with pytest.raises(ConfigError) as refused:
        load_settings(None, {env: value})
    return refused.value.message


@pytest.mark.parametrize("value", ["", "  \n"], ids=["empty", "blank"])
@pytest.mark.parametrize("env", MAPS)
def test_an_empty_map_is_refused_saying_so(env: str, value: str) -> None:
    assert refusal(env, value) == (
        f"{env}: empty: give a JSON object ({{}} for none), or leave the setting out"
    )


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("[]", "an array"),
        ('"oncall"', "a string"),
        ("null", "null"),
        ("3", "a number"),
        ("1.5", "a number"),
        ("false", "true or false"),
    ],
)
@pytest.mark.parametrize("env", MAPS)
def test_json_that_is_no_object_is_named_in_jsons_words(env: str, value: str, kind: str) -> None:
    assert refusal(env, value) == (
        f'{env}: not a JSON object but {kind}: write {{"<name>": {{...}}}}'
    )


@pytest.mark.parametrize("env", MAPS)
def test_an_empty_object_is_no_map_at_all(env: str) -> None:
    settings = load_settings(None, {env: "{}"})
    field = env.removeprefix("REMEDIATOR_").lower()
    assert getattr(settings, field) == {}
