"""Shared fixtures: one real server of each kind per session, clean state per test."""

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
    "tests.support.cdp",
    "tests.support.served",
    "tests.support.prefix",
]
