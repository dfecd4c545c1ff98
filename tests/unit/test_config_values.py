"""Setting values as users write them: durations with a unit and within their bounds, ASCII
digits, numbers that are not booleans; errors that name the key and what to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from receiver.config import Settings, load_settings
from tests.support.config import refusal


@pytest.mark.parametrize(
    ("name", "value"),
    [
        # Read as 30 seconds where the default, 30m, taught minutes.
        ("REMEDIATOR_APPROVAL_TTL", "30"),
        ("REMEDIATOR_BREAKER_OPEN_FOR", "30"),
        ("REMEDIATOR_LOCK_TTL", "1e3"),
        ("REMEDIATOR_LOCK_TTL", "1_0"),
        ("REMEDIATOR_LOCK_TTL", "0.0001"),
        ("REMEDIATOR_READ_TIMEOUT", "30"),
        ("REMEDIATOR_WORKER_POLL_INTERVAL", "0.5"),
    ],
)
def test_a_duration_variable_without_a_unit_is_refused(name: str, value: str) -> None:
    message = refusal({name: value})
    assert message.startswith(f"{name}: {value!r} is not a duration: a number needs a unit")
    assert "30m" in message


# Shown as written: YAML 1.1 read `1_0` as 10 and `1.5` as a float, and the message said 10.
@pytest.mark.parametrize(
    ("yaml_value", "shown"), [("30", "30"), ("1.5", "'1.5'"), ("1_0", "'1_0'")]
)
def test_a_duration_in_yaml_without_a_unit_is_refused(
    tmp_path: Path, yaml_value: str, shown: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"approvals:\n  ttl: {yaml_value}\n", encoding="utf-8")
    message = refusal({}, config)
    assert message.startswith(f"approvals.ttl: {shown} is not a duration: a number needs a unit")


def test_a_duration_with_its_unit_is_read_and_blanks_around_a_variable_are_dropped() -> None:
    environ = {"REMEDIATOR_APPROVAL_TTL": " 30m ", "REMEDIATOR_LOCK_TTL": "1s"}
    settings = load_settings(None, environ)
    assert (settings.approval_ttl_seconds, settings.lock_ttl_seconds) == (1800, 1)


def test_python_callers_still_give_seconds() -> None:
    # The fields' names say seconds; only what a user writes needs the unit.
    assert Settings(readiness_timeout_seconds=0.3).readiness_timeout_seconds == 0.3


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REMEDIATOR_LOCK_TTL", "\u0663m"),  # ARABIC-INDIC DIGIT THREE
        ("REMEDIATOR_INCIDENT_GAP", "\uff11h"),  # FULLWIDTH DIGIT ONE
        ("REMEDIATOR_MAX_BODY_BYTES", "\u0661\u0666MiB"),
        ("REMEDIATOR_MAX_BODY_BYTES", "\uff11\uff16\uff17\uff17\uff17\uff12\uff11\uff16"),
    ],
)
def test_digits_other_than_ascii_are_refused(name: str, value: str) -> None:
    message = refusal({name: value})
    assert message.startswith(f"{name}: {value!r} is not a ")
    assert "ASCII 0-9" in message


@pytest.mark.parametrize(
    ("name", "value", "bounds"),
    [
        ("REMEDIATOR_LOCK_TTL", "500ms", "between 1s and a year"),
        ("REMEDIATOR_BUDGET_WINDOW", "1ms", "between 1s and a year"),
        ("REMEDIATOR_APPROVAL_TTL", "0s", "between 1s and a year"),
        ("REMEDIATOR_INCIDENT_GAP", "1ms", "between 1s and 7d"),
        ("REMEDIATOR_INCIDENT_GAP", "8d", "between 1s and 7d"),
        ("REMEDIATOR_EVENT_RETENTION", "600w", "between 1s and ten years"),
        # At 1ms a client sending headers and body 50 ms apart was cut off unanswered.
        ("REMEDIATOR_READ_TIMEOUT", "1ms", "between 1s and a year"),
        ("REMEDIATOR_READ_TIMEOUT", "999ms", "between 1s and a year"),
        ("REMEDIATOR_INTAKE_TIMEOUT", "1ms", "between 1s and a year"),
        ("REMEDIATOR_READINESS_TIMEOUT", "1ms", "between 100ms and a year"),
        # Each poll is a claim statement: at 1ms a LISTEN outage made a busy loop of it.
        ("REMEDIATOR_WORKER_POLL_INTERVAL", "1ms", "between 100ms and a year"),
        ("REMEDIATOR_REFUSAL_DIGEST", "500ms", "between 1s and 1d, or off"),
        ("REMEDIATOR_REFUSAL_DIGEST", "25h", "between 1s and 1d, or off"),
        ("REMEDIATOR_UNREACHABLE_RETRY_FOR", "25h", "between 0s and 1d"),
        ("REMEDIATOR_UNDO_UNREACHABLE_RETRY_FOR", "2d", "between 0s and 1d"),
    ],
)
def test_a_duration_out_of_its_bounds_says_them_as_durations(
    name: str, value: str, bounds: str
) -> None:
    assert refusal({name: value}) == f"{name}: {value!r} is out of range: give a duration {bounds}"


@pytest.mark.parametrize(
    ("value", "seconds"), [("off", 0.0), (" OFF ", 0.0), ("0s", 0.0), ("1d", 86400.0)]
)
def test_the_refusal_digest_can_be_turned_off(value: str, seconds: float) -> None:
    assert (
        load_settings(None, {"REMEDIATOR_REFUSAL_DIGEST": value}).refusal_digest_seconds == seconds
    )


def test_a_bare_off_in_yaml_turns_the_refusal_digest_off(tmp_path: Path) -> None:
    # YAML 1.1 reads a bare `off` as false: that is what the operator meant.
    config = tmp_path / "config.yaml"
    config.write_text("announcements:\n  refusal_digest: off\n")
    assert load_settings(config, {}).refusal_digest_seconds == 0.0


def test_nan_is_no_duration() -> None:
    message = refusal({"REMEDIATOR_INCIDENT_GAP": "nan"})
    assert message.startswith("REMEDIATOR_INCIDENT_GAP: 'nan' is not a duration; expected")
    assert "604800" not in message


@pytest.mark.parametrize(
    ("section", "key", "where"),
    [
        ("http", "port", "http.port"),
        ("http", "max_body_bytes", "http.max_body_bytes"),
        ("worker", "concurrency", "worker.concurrency"),
        ("worker", "max_attempts", "worker.max_attempts"),
        ("guards:\n  budget", "count", "guards.budget.count"),
        ("guards:\n  breaker", "failures", "guards.breaker.failures"),
    ],
)
def test_a_boolean_is_not_a_number(tmp_path: Path, section: str, key: str, where: str) -> None:
    # Pydantic's lax mode read `port: true` as port 1.
    indent = "    " if "\n" in section else "  "
    config = tmp_path / "c.yaml"
    config.write_text(f"{section}:\n{indent}{key}: true\n", encoding="utf-8")
    assert refusal({}, config) == f"{where}: true is a boolean, not a number: write the number"


# (variable, YAML path) of every integer setting.
INTEGER_SETTINGS = [
    ("REMEDIATOR_PORT", "http.port"),
    ("REMEDIATOR_WORKER_CONCURRENCY", "worker.concurrency"),
    ("REMEDIATOR_WORKER_MAX_ATTEMPTS", "worker.max_attempts"),
    ("REMEDIATOR_BUDGET_COUNT", "guards.budget.count"),
    ("REMEDIATOR_BREAKER_FAILURES", "guards.breaker.failures"),
]
WRITE_DIGITS = "write it with the digits 0-9 alone (no `_`, `+`, fraction or exponent)"


@pytest.mark.parametrize(("name", "where"), INTEGER_SETTINGS)
@pytest.mark.parametrize("value", ["9_0", "+90", "9e1", "90.0", "0x5a", "\u0669\u0660", "1:30"])
def test_an_integer_variable_is_ascii_digits(name: str, where: str, value: str) -> None:
    # Pydantic's lax mode read REMEDIATOR_PORT=9_096 and 90.0 as numbers (int() rules);
    # `serve --port` refuses them.
    assert refusal({name: value}) == f"{name}: {value!r} is not an integer: {WRITE_DIGITS}"


@pytest.mark.parametrize(("name", "where"), INTEGER_SETTINGS)
@pytest.mark.parametrize("value", ["9_0", "+90", "0x5a", "0b11", "1:30", "90.0", "'9_0'"])
def test_an_integer_in_yaml_is_ascii_digits(
    tmp_path: Path, name: str, where: str, value: str
) -> None:
    # YAML 1.1 read 9_0 as 90, 0x5a as 90, 0b11 as 3, 1:30 as 90; pydantic read 90.0 and the
    # quoted '9_0' as 90.
    *sections, key = where.split(".")
    text = "".join(f"{'  ' * depth}{part}:\n" for depth, part in enumerate(sections))
    config = tmp_path / "c.yaml"
    config.write_text(f"{text}{'  ' * len(sections)}{key}: {value}\n", encoding="utf-8")
    shown = repr(value.strip("'"))
    assert refusal({}, config) == f"{where}: {shown} is not an integer: {WRITE_DIGITS}"


def test_an_integer_with_leading_zeros_is_decimal(tmp_path: Path) -> None:
    # YAML 1.1 read 017 as octal: 15.
    config = tmp_path / "c.yaml"
    config.write_text("worker:\n  concurrency: 017\n", encoding="utf-8")
    assert load_settings(config, {}).worker_concurrency == 17
    assert load_settings(None, {"REMEDIATOR_WORKER_CONCURRENCY": "017"}).worker_concurrency == 17


def test_an_integer_of_thousands_of_digits_is_refused_unquoted(tmp_path: Path) -> None:
    # In the file, int() raised past the loader (over 4,300 digits); in a variable, pydantic
    # quoted every digit back.
    config = tmp_path / "c.yaml"
    config.write_text(f"http:\n  port: {'9' * 5000}\n", encoding="utf-8")
    message = "'" + "9" * 80 + "…' has 5,000 digits: far out of range, write a smaller one"
    assert refusal({}, config) == f"http.port: {message}"
    assert refusal({"REMEDIATOR_PORT": "9" * 5000}) == f"REMEDIATOR_PORT: {message}"


def test_an_integer_variable_is_stripped_like_every_setting() -> None:
    # As durations, sizes and words are: a variable from an env file may keep a blank.
    assert load_settings(None, {"REMEDIATOR_PORT": " 9096 "}).port == 9096


def test_numbers_from_variables_still_parse() -> None:
    settings = load_settings(None, {"REMEDIATOR_PORT": "10", "REMEDIATOR_BUDGET_COUNT": "0"})
    assert (settings.port, settings.budget_count) == (10, 0)


@pytest.mark.parametrize("text", ["http:\n", "http:\nguards:\n  budget:\n", "http: {}\n"])
def test_an_empty_section_sets_nothing(tmp_path: Path, text: str) -> None:
    # `http:` with nothing under it was "http: unknown setting".
    config = tmp_path / "c.yaml"
    config.write_text(text, encoding="utf-8")
    assert load_settings(config, {}) == load_settings(None, {})


def test_an_empty_value_that_is_no_section_is_still_unknown(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("htp:\n", encoding="utf-8")
    assert refusal({}, config) == f"{config}:1: htp: unknown setting"


@pytest.mark.parametrize(
    ("text", "told"),
    [
        # Were `datetime.date(2024, 1, 1) is not a duration`, `Input should be a valid string`.
        ("worker:\n  lease: 2024-01-01\n", "worker.lease: '2024-01-01' is not a duration;"),
        ("log:\n  level: 2024-01-01 10:00:00\n", "log.level: '2024-01-01 10:00:00' is not one"),
        ("http:\n  port: 2024-01-01\n", "http.port: '2024-01-01' is not an integer"),
    ],
)
def test_a_date_in_the_file_is_quoted_as_written(tmp_path: Path, text: str, told: str) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text, encoding="utf-8")
    assert refusal({}, config).startswith(told)


def test_a_date_is_the_text_written_where_a_setting_takes_text(tmp_path: Path) -> None:
    # Was `rules_dir: Input is not a valid path for <class 'pathlib.Path'>`.
    config = tmp_path / "c.yaml"
    config.write_text("rules_dir: 2024-01-01\n", encoding="utf-8")
    assert load_settings(config, {}).rules_dir == Path("2024-01-01")


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!binary aGVsbG8=", "!!binary"),  # was `b'hello' is not a duration`
        ("!!set {a}", "!!set"),  # was `{'a'} is not a duration`
        ("!!timestamp 2024-01-01", "!!timestamp"),
        ("!!omap [a: 1]", "!!omap"),
        ("!!pairs [a: 1]", "!!pairs"),
    ],
)
@pytest.mark.parametrize("key", ["worker:\n  lease", "auth:\n  password", "namespaces:\n  deny"])
def test_a_value_of_no_settings_kind_is_refused_naming_its_tag(
    tmp_path: Path, value: str, tag: str, key: str
) -> None:
    # `auth.password: !!binary ...` was the password "hello"; `deny: !!set {a}` denied `a`.
    config = tmp_path / "c.yaml"
    config.write_text(f"\n{key}: {value}\n", encoding="utf-8")
    assert refusal({}, config) == (
        f"{config}:3: a {tag} value: a setting is text, a whole number, true or false, a list"
        " or a map: remove the tag"
    )
    assert "aGVsbG8" not in refusal({}, config)


@pytest.mark.parametrize(
    ("text", "told"),
    [
        # Were "Input should be a valid string (got True)": YAML 1.1 reads on/off/yes/no.
        ("log:\n  level: on\n", 'log.level: write "on" in quotes: YAML reads on as true'),
        ("auth:\n  username: Off\n  password: x\n", 'auth.username: write "Off" in quotes'),
        ("namespaces:\n  allow: [shop, yes]\n", 'namespaces.allow.1: write "yes" in quotes'),
        ("approvals:\n  notify_channel: no\n", 'approvals.notify_channel: write "no" in quotes'),
    ],
)
def test_a_word_yaml_reads_as_a_boolean_is_told_to_be_quoted(
    tmp_path: Path, text: str, told: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text, encoding="utf-8")
    assert refusal({}, config).startswith(told)


@pytest.mark.parametrize(
    ("text", "told"),
    [
        # Was "http.port: true is a boolean, not a number": a true the file does not hold.
        ("http:\n  port: on\n", "http.port: on is YAML's true, a boolean, not a number"),
        ("http:\n  port: No\n", "http.port: No is YAML's false, a boolean, not a number"),
        # Written true, it is named as written.
        ("http:\n  port: true\n", "http.port: true is a boolean, not a number"),
    ],
)
def test_a_word_yaml_reads_as_a_boolean_where_a_number_is_meant_is_named(
    tmp_path: Path, text: str, told: str
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(text, encoding="utf-8")
    assert refusal({}, config) == f"{told}: write the number"


def test_true_where_text_is_meant_is_shown_as_yaml_writes_it(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("log:\n  level: true\n", encoding="utf-8")
    assert refusal({}, config) == "log.level: Input should be a valid string (got true)"


def test_a_boolean_word_still_sets_a_switch(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("dry_run: on\nannouncements:\n  refusal_digest: off\n", encoding="utf-8")
    settings = load_settings(config, {})
    assert (settings.dry_run.value, settings.refusal_digest_seconds) == ("true", 0.0)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REMEDIATOR_LOCK_TTL", "9" * 5000 + "s"),
        ("REMEDIATOR_LOCK_TTL", "9" * 5000),
        ("REMEDIATOR_MAX_BODY_BYTES", "9" * 5000),
        ("REMEDIATOR_LOG_FORMAT", "j" * 5000),
    ],
)
def test_a_long_refused_setting_is_quoted_cut(name: str, value: str) -> None:
    message = refusal({name: value})
    assert f"{value[:80] + '…'!r}" in message
    assert len(message) < 300
