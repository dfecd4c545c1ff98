"""Settings that are probably a typo are refused, told the one they are a typo of:

- unknown ``REMEDIATOR_*`` variables are refused, naming the closest setting; the tools' own
  are known, and other tools' prefixes pass;
- unknown keys of the settings file, of a connection and of the approvers file are refused
  naming the key they are a typo of, and a key that is no name (a secret pasted where a key
  goes, an escape sequence) is not shown.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from receiver.config import KEYS, ConfigError, Settings, load_settings
from receiver.config.approvals import load_approvals
from receiver.config.variables import ENV_PREFIX, FOREIGN_PREFIXES, FOREIGN_VARIABLES

ROOT = Path(__file__).resolve().parents[2]


def test_unknown_variables_are_refused_naming_the_closest_setting() -> None:
    # REMEDIATOR_DRYRUN was a warning, and serve started live: the same typo in YAML was exit 2.
    environ = {
        "REMEDIATOR_PORTT": "9000",
        "REMEDIATOR_DRYRUN": "true",
        "REMEDIATOR_SOMETHING_ELSE": "x",
        "REMEDIATOR_PORT": "9000",
        "REMEDIATOR_CONTROLPLANE_BIN": "/opt",
        "REMEDIATOR_TEST_DATABASE_URL": "postgres://x",
        "OTHER_PORTT": "1",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ)
    assert caught.value.message == (
        "REMEDIATOR_DRYRUN: unknown setting (did you mean REMEDIATOR_DRY_RUN?); "
        "REMEDIATOR_PORTT: unknown setting (did you mean REMEDIATOR_PORT?); "
        "REMEDIATOR_SOMETHING_ELSE: unknown setting"
    )


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        # Typos: an underscore dropped or added, a word misspelt, a plural slip.
        ("DRYRUN", "DRY_RUN"),
        ("DRY_RUNN", "DRY_RUN"),
        ("LOGLEVEL", "LOG_LEVEL"),
        ("KUBE_CONFIG", "KUBECONFIG"),
        ("WEBHOOK_TOKENFILE", "WEBHOOK_TOKEN_FILE"),
        ("PORTT", "PORT"),
        ("LOG_LEVL", "LOG_LEVEL"),
        ("DATABSE_URL", "DATABASE_URL"),
        ("DATABASE_URI", "DATABASE_URL"),
        ("WORKER_CONCURENCY", "WORKER_CONCURRENCY"),
        ("SLACK_SIGNING_SECRET_FIEL", "SLACK_SIGNING_SECRET_FILE"),
        ("OPERATOR_TOKENS_FILE", "OPERATOR_TOKEN_FILE"),
        ("NOTIFY_CHANNEL", "NOTIFY_CHANNELS"),
        ("NAMESPACES_DENY", "NAMESPACE_DENY"),
        ("RULE_DIR", "RULES_DIR"),
        # Other words, or a word missing: difflib suggested the name in the comment, which is
        # another setting (DEBUG -> DRY_RUN would switch dry-run on).
        ("CONFIG_FILE", None),  # KUBECONFIG
        ("CONFIG_DIR", None),  # KUBECONFIG
        ("KUBE_CONTEXT", None),  # KUBECONFIG
        ("DEBUG", None),  # DRY_RUN
        ("POSTGRES_URL", None),  # REDIS_URL
        ("REDIS_USER", None),  # REDIS_URL
        ("REDIS_HOST", None),  # REDIS_MODE
        ("DATABASE_PASSWORD", None),  # DATABASE_POOLER
        ("WEBHOOK_SECRET", None),  # WEBHOOK_USERNAME
        ("SLACK_TOKEN", None),  # WEBHOOK_TOKEN
        ("LOG_FILE", None),  # LOG_LEVEL
        ("RULES_FILE", None),  # RULES_DIR
        ("METRICS_PORT", None),  # PORT
        ("WORKERS", None),  # WORKER_LEASE
        ("TIMEOUT", None),  # READ_TIMEOUT
    ],
)
def test_an_unknown_variable_is_told_only_the_setting_it_is_a_typo_of(
    name: str, meant: str | None
) -> None:
    # The names are written without the prefix: test_every_variable_the_tools_read_is_known
    # reads every REMEDIATOR_* name in tests/ as one a tool reads.
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {ENV_PREFIX + name: "x"})
    hint = f" (did you mean {ENV_PREFIX}{meant}?)" if meant else ""
    assert caught.value.message == f"{ENV_PREFIX}{name}: unknown setting{hint}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # The README promises what the variables get: the setting a key is a typo of.
        ("dryrun: true\n", "1: dryrun: unknown setting (did you mean dry_run?)"),
        ("http:\n  prot: 9096\n", "2: http.prot: unknown setting (did you mean http.port?)"),
        ("htpp:\n  port: 9096\n", "2: htpp.port: unknown setting (did you mean http.port?)"),
        (
            "guards:\n  budget:\n    cuont: 5\n",
            "3: guards.budget.cuont: unknown setting (did you mean guards.budget.count?)",
        ),
        ("redis:\n  sentinels: [a]\n", "2: redis.sentinels: unknown setting"),  # other words
        # A map under a misspelt setting that takes one is named there, with the one meant: it
        # was named at its first key (`notify.channel.oncall.kind: unknown setting`, as if
        # `kind` were wrong), and an empty one (`notify: {chanels: {}}`) was taken in silence.
        (
            "notify:\n  channel:\n    oncall: {kind: slack, url_file: /run/hook}\n",
            "2: notify.channel: unknown setting (did you mean notify.channels?)",
        ),
        (
            "postgres:\n  database:\n    orders: {dsn_file: /run/dsn}\n",
            "2: postgres.database: unknown setting (did you mean postgres.databases?)",
        ),
        (
            "http:\n  endpoint: {}\n",
            "2: http.endpoint: unknown setting (did you mean http.endpoints?)",
        ),
        (
            "notify: {chanels: {}}\n",
            "1: notify.chanels: unknown setting (did you mean notify.channels?)",
        ),
        ("guards: {budgett: {}}\n", "1: guards.budgett: unknown setting"),
        ("foo: {}\n", "1: foo: unknown setting"),
        # A misspelt section: named at its settings, which say the section meant.
        (
            "aprovals:\n  keys_dir: /run/keys\n",
            "2: aprovals.keys_dir: unknown setting (did you mean approvals.keys_dir?)",
        ),
        # A section given a value: its keys go under it.
        (
            "http: 9096\n",
            "1: http: a section, not a value: write its settings under it (http.endpoints,"
            " http.host, http.max_body_bytes, http.port, http.read_timeout,"
            " http.readiness_timeout)",
        ),
    ],
)
def test_an_unknown_yaml_key_is_told_the_setting_it_is_a_typo_of(
    tmp_path: Path, text: str, message: str
) -> None:
    # Named by the file and line of the key (the file is remediator.yaml in tmp_path).
    assert refusal_of_settings_file(tmp_path, text) == f"{tmp_path / 'remediator.yaml'}:{message}"


def refusal_of_settings_file(tmp_path: Path, text: str) -> str:
    """The ConfigError's message for a settings file holding ``text``."""
    config = tmp_path / "remediator.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, {})
    return caught.value.message


def test_the_tools_variables_and_others_prefixes_are_no_settings_and_pass() -> None:
    environ = {
        "REMEDIATOR_CONTROLPLANE_BIN": "/opt",
        "REMEDIATOR_CONFIG": "x",
        "REMEDIATOR_TEST_DATABASE_URL": "postgres://x",
        "OTHER_PORTT": "1",
    }
    assert load_settings(None, environ) == load_settings(None, {})


def test_every_variable_the_tools_read_is_known() -> None:
    # The build scripts, the Makefile, the test support and the bench read REMEDIATOR_* variables
    # of their own: an unknown variable is refused at start-up, so each must be known.
    used: set[str] = set()
    places = [ROOT / "Makefile", ROOT / "Dockerfile"]
    for folder in ("hack", "tests", "bench", "deploy", ".ci"):
        places += (ROOT / folder).rglob("*")
    for path in places:
        if path.is_file() and path.suffix in ("", ".sh", ".py", ".go", ".mk", ".yaml", ".yml"):
            used |= set(
                re.findall(r"REMEDIATOR_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="ignore"))
            )
    settings = {k.env for k in KEYS}
    foreign = {
        name
        for name in used - settings
        if name not in FOREIGN_VARIABLES and not name.startswith(FOREIGN_PREFIXES)
    }
    assert foreign <= {"REMEDIATOR_PORTT", "REMEDIATOR_DRYRUN", "REMEDIATOR_SOMETHING_ELSE"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "postgres:\n  databases:\n    orders: {dsn_fil: /run/dsn}\n",
            "postgres.databases.orders.dsn_fil: unknown key (did you mean 'dsn_file'?)",
        ),
        (
            "notify:\n  channels:\n    oncall: {knd: slack, url_file: /run/url}\n",
            "notify.channels.oncall.knd: unknown key (did you mean 'kind'?)",
        ),
        (
            "redis:\n  queues:\n    jobs:\n      url_file: /run/url\n"
            "      queues: {q: {layout: list, key: k, dead_leter_key: d}}\n",
            "redis.queues.jobs.queues.q.dead_leter_key: unknown key (did you mean"
            " 'dead_letter_key'?)",
        ),
    ],
)
def test_an_unknown_key_of_a_connection_is_told_the_key_it_is_a_typo_of(
    tmp_path: Path, text: str, message: str
) -> None:
    assert message in refusal_of_settings_file(tmp_path, text).split("; ")


def test_an_unknown_key_of_the_approvers_file_is_told_the_key_it_is_a_typo_of(
    tmp_path: Path,
) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text("by_rul:\n  restart: [alice]\n")
    with pytest.raises(ConfigError) as caught:
        load_approvals(Settings(approvers_file=approvers))
    assert caught.value.message == (
        f"REMEDIATOR_APPROVERS_FILE: {approvers}: by_rul: unknown key (did you mean 'by_rule'?)"
    )


# A secret written where a key goes (a DSN pasted one line up), and keys holding an escape
# sequence (YAML's "\e": a file may hold one written so): quoted whole in the error, the
# secret reached the logs and the escape the operator's terminal.
SECRET_KEY = "postgres://remediator:hunter2@db:5432/orders"


def test_an_unknown_key_of_the_approvers_file_that_is_no_name_is_not_shown(
    tmp_path: Path,
) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text(
        f'"{SECRET_KEY}": [alice]\n"by_rule\\e[2J": {{}}\nby_risk: {{"low\\e]0;x": [bob]}}\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_approvals(Settings(approvers_file=approvers))
    message = caught.value.message
    assert "hunter2" not in message, message
    assert "\x1b" not in message, message
    assert message.count("file: a key that is no key's name (not shown") == 2, message
    assert "this takes by_rule, by_risk, default, slack_users" in message
    assert "by_risk: unknown risk (a key not shown); use low or high" in message


def test_a_key_of_the_approvers_file_given_twice_is_named_only_when_it_is_a_name(
    tmp_path: Path,
) -> None:
    approvers = tmp_path / "approvers.yaml"
    approvers.write_text(f'"{SECRET_KEY}": [alice]\n"{SECRET_KEY}": [bob]\n')
    with pytest.raises(ConfigError) as caught:
        load_approvals(Settings(approvers_file=approvers))
    assert caught.value.message == (
        f"REMEDIATOR_APPROVERS_FILE: {approvers}:2: invalid YAML: a key is given twice (first"
        " at line 1; not shown: no key's name)"
    )
    approvers.write_text("default: [alice]\ndefault: [bob]\n")
    with pytest.raises(ConfigError, match="duplicate key 'default' "):
        load_approvals(Settings(approvers_file=approvers))


def test_an_unknown_key_of_a_connection_that_is_no_name_is_not_shown(tmp_path: Path) -> None:
    text = f'postgres:\n  databases:\n    "ord\\eers": {{dsn_file: /run/dsn, "{SECRET_KEY}": 1}}\n'
    message = refusal_of_settings_file(tmp_path, text)
    assert "hunter2" not in message, message
    assert "\x1b" not in message, message
    assert (
        "postgres.databases.ord\\x1bers: a key that is no key's name (not shown: a value"
        " written as a key?); this takes dsn_file, statement_timeout, timeout, max_connections"
    ) in message, message
