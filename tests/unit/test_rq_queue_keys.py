"""An rq queue's name and RQ's key prefix, read from the keys it is configured with: the name
is what RQ writes as a job's ``origin``, which the requeue compares (a job of another queue is
left), and the prefix names RQ's set of queues (``<prefix>:queues``)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remediations.redis_queue.queues import Layout, QueueSpec

# Either may hold ':queue:' or ':failed:': the two keys together tell them apart (a prefix that
# fits both one way cannot fit both another way).
prefixes = st.lists(st.sampled_from(["a", ":", "queue", "failed", "{"])).map("".join)
names = st.lists(st.sampled_from(["r", ":", "queue", "failed", "}"]), min_size=1).map("".join)


@given(prefix=prefixes, name=names)
def test_the_name_and_prefix_are_read_back_from_rqs_keys(prefix: str, name: str) -> None:
    spec = QueueSpec(Layout.RQ, f"{prefix}:queue:{name}", f"{prefix}:failed:{name}")
    assert spec.rq_queue == name
    assert spec.rq_queues_key == f"{prefix}:queues"


@pytest.mark.parametrize(
    ("key", "dead_letter_key"),
    [
        ("rq:queue:reports", "rq:failed:exports"),  # two queues' keys
        ("rq:queue:reports", "other:failed:reports"),  # two prefixes
        ("rq:queue:", "rq:failed:"),  # no name
        ("reports", "reports:failed"),  # not RQ's keys
    ],
)
def test_keys_that_are_not_one_rq_queues_are_refused(key: str, dead_letter_key: str) -> None:
    with pytest.raises(ValueError, match="RQ's keys of one queue") as caught:
        QueueSpec(Layout.RQ, key, dead_letter_key)
    assert repr(key) in str(caught.value)
