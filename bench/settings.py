"""What the bench's servers run with: PostgreSQL settings given on the command line
(``--postgres-setting``, for "what if" runs), and the ``worker.concurrency`` that the service
runs with, so that the results say both."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from receiver.config import load_settings

__all__ = [
    "RESERVED_SETTINGS",
    "add_postgres_setting_argument",
    "postgres_setting",
    "round_settings",
    "settings_note",
    "worker_shape",
]

# A PostgreSQL parameter name, or an extension's (``pg_stat_statements.track``). PostgreSQL
# reads names case-insensitively; they are lower-cased here so that one setting given twice
# (in two cases) is one setting, the last given.
_NAME = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")

# What the embedded server is started with and reached through: not the bench's to change.
RESERVED_SETTINGS = frozenset(
    {
        "config_file",
        "data_directory",
        "hba_file",
        "ident_file",
        "listen_addresses",
        "port",
        "unix_socket_directories",
    }
)


def postgres_setting(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` as (lower-cased name, value); argparse's error for anything else.

    The value may be empty (``shared_preload_libraries=``) and may hold ``=``. A name or value
    that PostgreSQL does not know is refused by PostgreSQL when the bench starts it."""
    name, sep, value = text.partition("=")
    name = name.strip().lower()
    if not sep or not _NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not NAME=VALUE (a PostgreSQL setting, e.g. synchronous_commit=off)"
        )
    if name in RESERVED_SETTINGS:
        raise argparse.ArgumentTypeError(
            f"{name} is how the bench starts and reaches its PostgreSQL; it cannot be given"
        )
    return name, value.strip()


def add_postgres_setting_argument(parser: argparse.ArgumentParser) -> None:
    """``--postgres-setting NAME=VALUE``, repeatable, into ``args.postgres_settings``."""
    parser.add_argument(
        "--postgres-setting",
        dest="postgres_settings",
        metavar="NAME=VALUE",
        type=postgres_setting,
        action="append",
        default=[],
        help="a setting for the bench's PostgreSQL (repeatable; the last of a name counts), "
        "for 'what if' runs such as synchronous_commit=off; the storm round keeps "
        "pg_stat_statements loaded",
    )


def round_settings(
    given: Sequence[tuple[str, str]], required: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """A round's PostgreSQL settings: (what PostgreSQL is started with, which of ``given`` that
    is, the names of ``given`` that ``required`` overrode, sorted). ``given`` in command-line
    order: the last of a name counts. ``required``: what the round's figures need."""
    wanted = dict(given)
    overridden = sorted(n for n, v in wanted.items() if n in required and required[n] != v)
    applied = {n: v for n, v in wanted.items() if n not in overridden}
    return {**wanted, **required}, applied, overridden


def settings_note(applied: Mapping[str, str]) -> str:
    """The settings given that a round's PostgreSQL runs with, for its results ('' if none)."""
    if not applied:
        return ""
    return "PostgreSQL settings given: " + ", ".join(f"{n}={v}" for n, v in applied.items())


def worker_shape(env: Mapping[str, str]) -> str:
    """How ``remediator serve`` in ``env`` runs its worker, as the results print it:
    ``worker.concurrency 24``, or ``worker.concurrency 24 in each of 2 worker processes``
    (``worker.processes``, README "Worker processes"). Raises ConfigError as serve would."""
    config = env.get("REMEDIATOR_CONFIG")
    settings = load_settings(Path(config) if config else None, env)
    shape = f"worker.concurrency {settings.worker_concurrency}"
    if settings.worker_processes > 1:
        shape += f" in each of {settings.worker_processes} worker processes"
    return shape
