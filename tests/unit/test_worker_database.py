"""The external Redis of the tests (REMEDIATOR_TEST_REDIS_URL) under pytest-xdist: each worker
on a database of its own, since each test flushes the one it uses."""

from __future__ import annotations

import pytest

from tests.support.redis import worker_database


@pytest.mark.parametrize(
    ("url", "worker", "expected"),
    [
        ("redis://127.0.0.1:6379", "", "redis://127.0.0.1:6379"),
        ("redis://127.0.0.1:6379", "gw0", "redis://127.0.0.1:6379/0"),
        ("redis://127.0.0.1:6379", "gw2", "redis://127.0.0.1:6379/2"),
        ("redis://:pw@127.0.0.1:6379/3", "gw1", "redis://:pw@127.0.0.1:6379/4"),
        ("redis://127.0.0.1:6379/", "gw1", "redis://127.0.0.1:6379/1"),
        ("redis://127.0.0.1:6379/5", "master", "redis://127.0.0.1:6379/5"),
    ],
)
def test_each_worker_flushes_only_its_own_database(url: str, worker: str, expected: str) -> None:
    assert worker_database(url, worker) == expected
