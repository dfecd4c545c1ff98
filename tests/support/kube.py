"""A real Kubernetes control plane for tests: etcd + kube-apiserver + kube-controller-manager.

No kubelet, no scheduler: Pods are created by the ReplicaSet controller but never run (a test
that needs one Ready writes its status itself). The disruption controller keeps the status of
PodDisruptionBudgets, which evictions check.
Binaries come from ``REMEDIATOR_CONTROLPLANE_BIN`` (a directory holding ``etcd``,
``kube-apiserver`` and ``kube-controller-manager``) or from ``hack/controlplane/build.sh``,
which builds them from Go modules once and caches them (it prints the bin dir last on stdout).
Its PKI comes from tests/support/kube_pki.py, its kubeconfigs and clients from
tests/support/kube_clients.py, and its processes are run by tests/support/kube_processes.py.

Usage::

    with ControlPlane() as cp:
        api = await cp.admin_api_client()
        ...
        token = await cp.service_account_token("ns", "sa")
        cp.write_kubeconfig_for_token(token, tmp_path / "kubeconfig")

Set ``REMEDIATOR_CONTROLPLANE_KEEP=1`` to keep the temp dir (logs, certs, kubeconfigs) after stop().
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import ssl
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Self

from kubernetes_asyncio import client as k8s

from tests.support.kube_clients import api_client_from_kubeconfig, request_token, write_kubeconfig
from tests.support.kube_pki import b64, write_pki
from tests.support.kube_processes import ProcessGroup, distinct_ports
from tests.support.tools import ToolUnavailable, built_tool

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "controlplane" / "build.sh"
BIN_ENV = "REMEDIATOR_CONTROLPLANE_BIN"
KEEP_ENV = "REMEDIATOR_CONTROLPLANE_KEEP"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
# Controllers that need no kubelet/cloud and make Deployments behave as on a real cluster.
CONTROLLERS = (
    "deployment-controller",
    "replicaset-controller",
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    # PodDisruptionBudget status (healthy pods, disruptions allowed), which an eviction checks.
    "disruption-controller",
)


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


def find_binaries(build_timeout: float = 3600.0) -> Path:
    """Return the directory holding the control-plane binaries.

    Uses ``$REMEDIATOR_CONTROLPLANE_BIN`` if set, else runs ``hack/controlplane/build.sh``
    (seconds when cached; about 8 minutes cold on 2 cores, as the README says). Build progress
    goes to stderr.
    """
    try:
        bin_dir = built_tool(BIN_ENV, BUILD_SCRIPT, timeout_s=build_timeout)
    except ToolUnavailable as exc:
        raise ControlPlaneError(str(exc)) from exc
    missing = [b for b in BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise ControlPlaneError(f"{bin_dir} lacks executable(s) {', '.join(missing)}")
    return bin_dir


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on free loopback ports.

    ``start()`` blocks until ``/readyz`` answers ok (bounded by ``start_timeout``); ``stop()``
    terminates everything and removes the temp dir. Also a context manager.
    """

    def __init__(
        self,
        bin_dir: Path | str | None = None,
        *,
        start_timeout: float = 120.0,
        stop_timeout: float = 10.0,
        controllers: Sequence[str] = CONTROLLERS,
        extra_apiserver_args: Sequence[str] = (),
        extra_controller_manager_args: Sequence[str] = (),
    ) -> None:
        self._bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.controllers = tuple(controllers)
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.extra_controller_manager_args = tuple(extra_controller_manager_args)
        self._processes: ProcessGroup | None = None
        self._dir: Path | None = None
        self._server: str | None = None
        self._atexit_registered = False

    # -- public properties -------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        """Temp dir holding logs, certs, keys, kubeconfigs and etcd data."""
        if self._dir is None:
            raise ControlPlaneError("control plane is not started")
        return self._dir

    @property
    def server(self) -> str:
        """The kube-apiserver's https URL, e.g. ``https://127.0.0.1:41234``."""
        if self._server is None:
            raise ControlPlaneError("control plane is not started")
        return self._server

    @property
    def ca_file(self) -> Path:
        """PEM CA bundle that signed the apiserver's serving cert (and the client certs)."""
        return self.dir / "pki" / "ca.crt"

    @property
    def admin_kubeconfig(self) -> Path:
        """Kubeconfig with an embedded client cert in group ``system:masters``."""
        return self.dir / "admin.kubeconfig"

    @property
    def admin_cert_file(self) -> Path:
        return self.dir / "pki" / "admin.crt"

    @property
    def admin_key_file(self) -> Path:
        return self.dir / "pki" / "admin.key"

    @property
    def log_files(self) -> dict[str, Path]:
        return self._processes.log_files if self._processes is not None else {}

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._dir is not None:
            raise ControlPlaneError("control plane already started")
        bin_dir = self._bin_dir or find_binaries()
        self._dir = Path(tempfile.mkdtemp(prefix="remediator-cp-"))
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._start(bin_dir)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the processes newest first (SIGTERM, SIGKILL after ``stop_timeout`` each).

        One at a time: kube-apiserver shuts down in about a second while etcd is up, but hangs
        until killed if etcd goes first. Then removes the temp dir (kept if
        $REMEDIATOR_CONTROLPLANE_KEEP is set).
        """
        if self._processes is not None:
            self._processes.stop(self.stop_timeout)
            self._processes = None
        self._server = None
        if self._dir is not None:
            if os.environ.get(KEEP_ENV):
                print(f"control plane dir kept: {self._dir}")
            else:
                shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        if self._atexit_registered:
            atexit.unregister(self.stop)
            self._atexit_registered = False

    @contextmanager
    def controllers_paused(self) -> Iterator[Callable[[], None]]:
        """Hold kube-controller-manager still (SIGSTOP) for the block: no controller acts,
        so a change to an object stays unobserved (a PodDisruptionBudget's status keeps its
        old ``observedGeneration``), as on a cluster whose controllers lag. Yields a function
        that lets them go on early; they go on (SIGCONT) when the block ends in any case."""
        if self._processes is None:
            raise ControlPlaneError("control plane is not started")
        proc = self._processes.process("kube-controller-manager")
        proc.send_signal(signal.SIGSTOP)
        resumed = False

        def resume() -> None:
            nonlocal resumed
            if not resumed:
                resumed = True
                proc.send_signal(signal.SIGCONT)

        try:
            yield resume
        finally:
            resume()

    # -- kubeconfigs and clients -------------------------------------------------------------

    def write_kubeconfig_for_token(self, token: str, path: Path | str) -> Path:
        """Write a kubeconfig for this cluster authenticating with a bearer ``token``."""
        user = {"token": token}
        return write_kubeconfig(
            Path(path), self.server, self.ca_file.read_bytes(), "token-user", user
        )

    async def admin_api_client(self) -> k8s.ApiClient:
        """An ApiClient loaded from ``admin_kubeconfig``; the caller closes it."""
        return await api_client_from_kubeconfig(self.admin_kubeconfig)

    async def service_account_token(
        self,
        namespace: str,
        name: str,
        audiences: Sequence[str] | None = None,
        expiration_seconds: int = 3600,
    ) -> str:
        """Mint a token for ``namespace/name`` via the TokenRequest API.

        Creates the namespace and the ServiceAccount if missing. ``audiences`` defaults to the
        apiserver's (``--api-audiences``), so the token authenticates against this apiserver.
        """
        api_client = await self.admin_api_client()
        try:
            token = await request_token(
                api_client,
                namespace,
                name,
                list(audiences) if audiences is not None else [SERVICE_ACCOUNT_ISSUER],
                expiration_seconds,
            )
        finally:
            await api_client.close()
        if not token:
            raise ControlPlaneError(f"TokenRequest for {namespace}/{name} returned no token")
        return token

    # -- internals ---------------------------------------------------------------------------

    def _start(self, bin_dir: Path) -> None:
        d = self.dir
        pki = d / "pki"
        pki.mkdir()
        write_pki(pki, SERVICE_CIDR)
        processes = self._processes = ProcessGroup(d, ControlPlaneError)

        etcd_port, etcd_peer_port, api_port, kcm_port = distinct_ports(4)
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        processes.spawn(
            "etcd",
            [
                str(bin_dir / "etcd"),
                "--name=remediator",
                f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}",
                f"--initial-cluster=remediator=http://127.0.0.1:{etcd_peer_port}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync=true",  # test data; fsync only slows the suite down
                "--log-level=warn",
            ],
        )
        processes.wait_http(
            "etcd",
            f"{etcd_url}/health",
            None,
            lambda body: b'"true"' in body,
            self.start_timeout,
        )

        self._server = f"https://127.0.0.1:{api_port}"
        processes.spawn(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={api_port}",
                f"--cert-dir={d / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=RBAC",
                "--anonymous-auth=false",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--api-audiences={SERVICE_ACCOUNT_ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--profiling=false",
                *self.extra_apiserver_args,
            ],
        )
        processes.wait_http(
            "kube-apiserver",
            f"{self.server}/readyz",
            self._admin_ssl_context(),
            lambda b: b == b"ok",
            self.start_timeout,
        )

        write_kubeconfig(
            self.admin_kubeconfig,
            self.server,
            self.ca_file.read_bytes(),
            "admin",
            {
                "client-certificate-data": b64(self.admin_cert_file.read_bytes()),
                "client-key-data": b64(self.admin_key_file.read_bytes()),
            },
        )
        kubeconfig = str(self.admin_kubeconfig)
        processes.spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={kcm_port}",
                f"--cert-dir={d / 'kcm-certs'}",
                "--leader-elect=false",
                f"--controllers={','.join(self.controllers)}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--profiling=false",
                *self.extra_controller_manager_args,
            ],
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # kcm serves a self-signed cert from --cert-dir
        processes.wait_http(
            "kube-controller-manager",
            f"https://127.0.0.1:{kcm_port}/healthz",
            insecure,
            lambda b: b == b"ok",
            self.start_timeout,
        )

    def _admin_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.admin_cert_file), str(self.admin_key_file))
        return ctx
