"""Rule test files as text, for the pure tests of their parsing and loading: one test's
file around a body, and the errors its parse reports.

Shared by tests/unit/test_ruletest_parse.py, test_ruletest_load.py and test_ruletest_play.py.
"""

from __future__ import annotations

import textwrap

from receiver.ruletest.parse import parse_test_file

__all__ = ["ALERTS", "errors_of"]


def errors_of(text: str) -> list[str]:
    """The errors parsing ``text`` (dedented) as ``t.yaml`` reports, as ``t.yaml:LINE: ...``
    strings; checks that a file with errors yields no spec and one without does."""
    spec, located = parse_test_file("t.yaml", textwrap.dedent(text))
    assert (spec is None) == bool(located.errors)
    return [str(e) for e in located.errors]


def _one_test(body: str) -> str:
    """A file of one test ``t`` on rule file ``r.yaml``, ``body`` (YAML) its keys."""
    return "rule_files: [r.yaml]\ntests:\n  - name: t\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )


ALERTS = "alerts: {a: {labels: {alertname: X}}}\n"
