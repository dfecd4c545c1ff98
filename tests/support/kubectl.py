"""kubectl for the tests: the pinned binary, a tool behind the ``server_missing`` gate, and
kustomize rendering of deploy/ (``render``, ``parse``, ``one``).

The binary is ``$REMEDIATOR_KUBECTL`` if set (``make test`` sets it), else the one
hack/kubectl/build.sh builds or has cached.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.servers import server_missing
from tests.support.tools import ToolUnavailable, built_tool

__all__ = ["REPO", "Doc", "kubectl", "one", "parse", "render", "run_kubectl"]

REPO = Path(__file__).resolve().parents[2]
KUBECTL_BUILD = REPO / "hack" / "kubectl" / "build.sh"
KUBECTL_ENV = "REMEDIATOR_KUBECTL"

Doc = dict[str, Any]


@pytest.fixture(scope="session")
def kubectl() -> Path:
    """kubectl v1.36.3: ``$REMEDIATOR_KUBECTL``, else hack/kubectl/build.sh (cached after once)."""
    try:
        path = built_tool(KUBECTL_ENV, KUBECTL_BUILD, timeout_s=1800)
    except ToolUnavailable as exc:
        print(exc)  # the reason, in the captured output
        server_missing("kubectl (hack/kubectl/build.sh)")
    if not os.access(path, os.X_OK):
        server_missing(f"kubectl at {path}")
    return path


def run_kubectl(
    kubectl: Path, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(kubectl), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=REPO,
    )
    if check:
        assert proc.returncode == 0, f"kubectl {' '.join(args)} failed:\n{proc.stderr}"
    return proc


def render(kubectl: Path, directory: str) -> str:
    """``kubectl kustomize`` with kustomize's defaults, as Argo CD and Flux render."""
    return run_kubectl(kubectl, "kustomize", directory).stdout


def parse(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def one(docs: list[Doc], kind: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {[d['metadata']['name'] for d in found]}"
    return found[0]
