"""A process without cluster credentials never loads the Kubernetes client library.

``kubernetes_asyncio.client`` costs about 38 MB of RSS in each process that imports it; the
service (``serve``) and each worker process import the actions' modules whether or not a
cluster is configured, so those modules must not import the client at import time
(``remediations.kubernetes.api_errors``). Here rather than in tests/unit: it runs an interpreter
that imports ``receiver.cli``, which tests/unit refuses as starting the service. It needs no
server and opens no connection.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What a fresh interpreter prints after importing the modules of ``serve`` and of a worker
# process and building the actions' registry, as both do: the client's modules it loaded, then
# the action modules (loaded, or the check would prove nothing about them).
CODE = """
import sys
import receiver.service, receiver.processes.child, receiver.cli
from remediations.registry import default_registry
default_registry()
print(sorted(m for m in sys.modules if m.split(".")[0] == "kubernetes_asyncio"))
print(sorted(m for m in sys.modules if m.startswith("remediations.kubernetes.")))
"""


def test_service_and_worker_modules_do_not_load_the_kubernetes_client() -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KUBE", "REMEDIATOR_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", CODE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    client_modules, action_modules = done.stdout.splitlines()
    assert client_modules == "[]"
    for loaded in ("catalog", "kubeapi", "probe", "retry", "pods", "rollback", "scale_write"):
        assert f"'remediations.kubernetes.{loaded}'" in action_modules
