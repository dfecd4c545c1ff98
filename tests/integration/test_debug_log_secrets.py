"""``log.level: debug`` writes no Kubernetes API answer: kubernetes_asyncio logs each response
body at its debug level (``client/rest.py``), and a Deployment's body holds its containers'
environment, where a password written as a plain ``value`` sits. The service's log at debug,
set up as ``serve`` sets it up, read a Deployment on the real kube-apiserver: the body was in
it, the password with it (found by attack)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s

from receiver.log_setup import configure_logging
from tests.support.kube_fixtures import MakeDeployment

pytestmark = pytest.mark.kube

SECRET = "db-password-qzxd"


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """The service's logging at debug into a buffer; the root logger as it was afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    try:
        yield out
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


async def test_a_deployment_read_at_debug_leaves_its_environment_out_of_the_log(
    debug_log: io.StringIO, make_deployment: MakeDeployment, kube_admin: Any
) -> None:
    app = k8s.V1Container(
        name="app",
        image="registry.invalid/app:1",
        env=[k8s.V1EnvVar(name="DB_PASSWORD", value=SECRET)],
    )
    made = await make_deployment("web", containers=[app])
    read = await k8s.AppsV1Api(kube_admin).read_namespaced_deployment(
        "web", made.metadata.namespace
    )
    assert read.spec.template.spec.containers[0].env[0].value == SECRET
    logging.getLogger("remediator").debug("a debug line of the service's own")
    written = debug_log.getvalue()
    assert "a debug line of the service's own" in written  # debug is on
    assert SECRET not in written
