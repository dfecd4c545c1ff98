"""An eviction of a pod replaced by a namesake (a StatefulSet's db-0 again, another uid), on a
real kube-apiserver: the server retries the conflict of the uid precondition inside the request
(eviction.go), and answers 409 only after about 10 s, the default request timeout. Sent with
that timeout, a busy server's answer came after it: the try counted as one that may have
evicted the pod, and the retry's 409 was then reported as this step's deletion of a pod it never
touched ("deleted db-0 now"). The eviction waits for the answer (``EVICTION_ANSWER_S``)."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest

from remediations.kubernetes.evict import EVICTION_ANSWER_S, evict
from remediations.kubernetes.kubeapi import KubeApi
from remediations.kubernetes.pods import DeletePod
from tests.support.kube_actions import FAST
from tests.support.kube_pods import Core, live_pods, make_owned_pod, make_workload, step_ctx

pytestmark = pytest.mark.kube


async def test_a_replaced_pods_eviction_is_waited_for_and_reported_absent(
    kube_admin: Any, kube_namespace: str
) -> None:
    ns, labels = kube_namespace, {"app": "db"}
    owner = await make_workload(kube_admin, ns, "StatefulSet", "db", labels)
    first = await make_owned_pod(kube_admin, ns, "db-0", labels, "StatefulSet", owner)
    # Gone (never scheduled: removed at once), and its namesake made, as the controller would.
    await Core(kube_admin).delete_namespaced_pod("db-0", ns)
    assert await live_pods(kube_admin, ns) == {}
    second = await make_owned_pod(kube_admin, ns, "db-0", labels, "StatefulSet", owner)
    # A request timeout shorter than the server's retries (as a busy server's answer, 10 s,
    # comes later than the default 10 s): the eviction must wait for the answer all the same.
    short = dataclasses.replace(FAST, request_timeout=3.0)
    assert short.request_timeout < 9.0 < EVICTION_ANSWER_S
    api = KubeApi(step_ctx(kube_admin, str(uuid.uuid4())), short, DeletePod.name)

    outcome = await evict(api, ns, "db-0", first, None)

    assert outcome == "absent"  # replaced before this eviction: not this step's doing
    assert await live_pods(kube_admin, ns) == {second: "db-0"}
