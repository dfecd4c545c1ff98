"""Shared fixtures: one real server of each kind per session, clean state per test."""

from __future__ import annotations

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
    "tests.support.outage",
    "tests.support.cdp",
    "tests.support.served",
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
