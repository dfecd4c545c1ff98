"""The two signalling statements (``remediations/postgres/sql``) state the same fixed filter of
whose sessions may ever be signalled; each keeps its own clock and signal. Read as text: a
change to the filter in one file and not the other fails here, before any server is asked."""

from __future__ import annotations

import re
from importlib import resources

FILES = ("terminate_idle.sql", "cancel_long_queries.sql")


def _filter(name: str) -> list[str]:
    """The WHERE lines from ``backend_type`` through the excluded applications, without
    comments or indentation."""
    text = resources.files("remediations.postgres").joinpath("sql", name).read_text("utf-8")
    lines = [re.sub(r"--.*", "", line).strip() for line in text.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("WHERE a.backend_type"))
    end = next(i for i, line in enumerate(lines) if "a.application_name, '') <> ALL" in line)
    return [" ".join(line.split()) for line in lines[start : end + 1]]


def test_both_statements_share_the_fixed_session_filter() -> None:
    terminate, cancel = (_filter(name) for name in FILES)
    assert terminate == cancel
    # The parts the module docstring promises are fixed, not up to a rule.
    joined = " ".join(terminate)
    for clause in (
        "a.backend_type = 'client backend'",
        "a.pid <> pg_backend_pid()",
        "a.usename <> current_user",
        "NOT r.rolsuper AND NOT r.rolreplication",
        "a.usename = ANY ($2::text[])",
    ):
        assert clause in joined
