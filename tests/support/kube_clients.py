"""Kubeconfigs and clients for the test control plane (tests/support/kube.py): a kubeconfig
file for a server and a user, an ApiClient loaded from one, and a ServiceAccount token minted
with the TokenRequest API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from tests.support.kube_pki import b64


def write_kubeconfig(
    path: Path, server: str, ca_pem: bytes, user_name: str, user: dict[str, str]
) -> Path:
    """Write a kubeconfig (mode 0600) for the apiserver at ``server``, whose serving cert
    ``ca_pem`` signed, as ``user`` (a kubeconfig user entry: a token or client cert data)."""
    cfg: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "remediator-test",
                "cluster": {
                    "server": server,
                    "certificate-authority-data": b64(ca_pem),
                },
            }
        ],
        "users": [{"name": user_name, "user": user}],
        "contexts": [
            {
                "name": "remediator-test",
                "context": {"cluster": "remediator-test", "user": user_name},
            }
        ],
        "current-context": "remediator-test",
    }
    # JSON is YAML: every kubeconfig reader (kubectl, client-go, kubernetes_asyncio) takes it.
    path.write_text(json.dumps(cfg, indent=2) + "\n")
    path.chmod(0o600)
    return path


async def api_client_from_kubeconfig(path: Path | str) -> k8s.ApiClient:
    """A kubernetes_asyncio ApiClient for a kubeconfig file; the caller closes it."""
    api_client: k8s.ApiClient = await k8s_config.new_client_from_config(
        config_file=str(path), persist_config=False
    )
    return api_client


async def request_token(
    api_client: k8s.ApiClient,
    namespace: str,
    name: str,
    audiences: Sequence[str],
    expiration_seconds: int,
) -> str | None:
    """Mint a token for ServiceAccount ``namespace/name`` via the TokenRequest API, creating
    the namespace and the ServiceAccount if missing; None if the answer held no token."""
    core = k8s.CoreV1Api(api_client)
    await _create_if_missing(
        core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    )
    await _create_if_missing(
        core.create_namespaced_service_account(
            namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
        )
    )
    spec = k8s.V1TokenRequestSpec(audiences=list(audiences), expiration_seconds=expiration_seconds)
    resp = await core.create_namespaced_service_account_token(
        name, namespace, k8s.AuthenticationV1TokenRequest(spec=spec)
    )
    token = resp.status.token if resp.status is not None else None
    return str(token) if token else None


async def _create_if_missing(call: Awaitable[object]) -> None:
    try:
        await call
    except ApiException as exc:
        if exc.status != 409:
            raise
