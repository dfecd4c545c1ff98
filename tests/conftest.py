"""Shared fixtures: one real server of each kind per session, clean state per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import structlog
from hypothesis import settings

# No per-example deadline (hypothesis's default is 200 ms): a deadline is a timed test, which
# fails on a loaded machine for no fault of the code (a rule-set test did so under a full run
# beside other work); speed is measured by the benchmarks (bench/), never asserted here. An
# example's own settings still apply where a test sets them.
settings.register_profile("remediator", deadline=None)
settings.load_profile("remediator")

# The CLI's tables take the width COLUMNS gives (receiver.cli.common.console): pytest-xdist's
# workers run with COLUMNS=80, which folded the tables the CLI tests read. What the tests
# assert must not depend on the terminal that runs them.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)

pytest_plugins = [
    "tests.support.amoracle",
    "tests.support.postgres_fixtures",
    "tests.support.pgbouncer",
    "tests.support.redis_fixtures",
    "tests.support.redis_topology_fixtures",
    "tests.support.kube_fixtures",
    "tests.support.kubectl",
    "tests.support.pipeline",
    "tests.support.approvals",
    "tests.support.guards",
    "tests.support.worker_loop",
    "tests.support.outage",
    "tests.support.cdp",
    "tests.support.served",
    "tests.support.alertmanager_delivery",
    "tests.support.prefix",
]


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """structlog's configuration after a test is what it was before: a test that runs the CLI
    in process configures logging (``remediator test`` at the error level, say), and a later
    test's ``capture_logs`` then saw no warning at all, depending on which tests ran before."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
