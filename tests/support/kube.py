"""A real Kubernetes control plane for tests: etcd + kube-apiserver + kube-controller-manager.

No kubelet, no scheduler: Pods are created by the ReplicaSet controller but never run (a test
that needs one Ready writes its status itself). The disruption controller keeps the status of
PodDisruptionBudgets, which evictions check.
Binaries come from ``REMEDIATOR_CONTROLPLANE_BIN`` (a directory holding ``etcd``,
``kube-apiserver`` and ``kube-controller-manager``) or from ``hack/controlplane/build.sh``,
which builds them from Go modules once and caches them (it prints the bin dir last on stdout).

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
import base64
import datetime
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.client.exceptions import ApiException

from receiver.embedded.process import free_port
from tests.support.polling import eventually_blocking
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


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"    <cannot read {path}: {exc}>"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# PKI


@dataclass(frozen=True)
class _KeyPair:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _make_ca() -> _KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = _name("remediator-test-ca")
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _KeyPair(cert, key)


def _issue(
    ca: _KeyPair,
    subject: x509.Name,
    *,
    server: bool,
    dns_names: Sequence[str] = (),
    ips: Sequence[str] = (),
) -> _KeyPair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if dns_names or ips:
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return _KeyPair(builder.sign(ca.key, hashes.SHA256()), key)


def _cert_pem(pair: _KeyPair) -> bytes:
    return pair.cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(pair: _KeyPair) -> bytes:
    return pair.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)
    return path


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------------------------
# Control plane


@dataclass
class _Component:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]


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
        self._components: list[_Component] = []
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
        return {c.name: c.log_path for c in self._components}

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
        for comp in reversed(self._components):
            if comp.proc.poll() is None:
                comp.proc.send_signal(signal.SIGTERM)
                try:
                    comp.proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    comp.proc.kill()
                    comp.proc.wait(timeout=10)
            comp.log_file.close()
        self._components.clear()
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
        [comp] = [c for c in self._components if c.name == "kube-controller-manager"]
        comp.proc.send_signal(signal.SIGSTOP)
        resumed = False

        def resume() -> None:
            nonlocal resumed
            if not resumed:
                resumed = True
                comp.proc.send_signal(signal.SIGCONT)

        try:
            yield resume
        finally:
            resume()

    # -- kubeconfigs and clients -------------------------------------------------------------

    def write_kubeconfig_for_token(self, token: str, path: Path | str) -> Path:
        """Write a kubeconfig for this cluster authenticating with a bearer ``token``."""
        user = {"token": token}
        return self._write_kubeconfig(Path(path), "token-user", user)

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
            core = k8s.CoreV1Api(api_client)
            await _create_if_missing(
                core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
            )
            await _create_if_missing(
                core.create_namespaced_service_account(
                    namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name=name))
                )
            )
            spec = k8s.V1TokenRequestSpec(
                audiences=list(audiences) if audiences is not None else [SERVICE_ACCOUNT_ISSUER],
                expiration_seconds=expiration_seconds,
            )
            resp = await core.create_namespaced_service_account_token(
                name, namespace, k8s.AuthenticationV1TokenRequest(spec=spec)
            )
            token = resp.status.token if resp.status is not None else None
            if not token:
                raise ControlPlaneError(f"TokenRequest for {namespace}/{name} returned no token")
            return str(token)
        finally:
            await api_client.close()

    # -- internals ---------------------------------------------------------------------------

    def _start(self, bin_dir: Path) -> None:
        d = self.dir
        pki = d / "pki"
        pki.mkdir()
        self._write_pki(pki)

        etcd_port, etcd_peer_port, api_port, kcm_port = _distinct_ports(4)
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._spawn(
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
        self._wait_http("etcd", f"{etcd_url}/health", None, lambda body: b'"true"' in body)

        self._server = f"https://127.0.0.1:{api_port}"
        self._spawn(
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
        self._wait_http(
            "kube-apiserver",
            f"{self.server}/readyz",
            self._admin_ssl_context(),
            lambda b: b == b"ok",
        )

        self._write_kubeconfig(
            self.admin_kubeconfig,
            "admin",
            {
                "client-certificate-data": _b64(self.admin_cert_file.read_bytes()),
                "client-key-data": _b64(self.admin_key_file.read_bytes()),
            },
        )
        kubeconfig = str(self.admin_kubeconfig)
        self._spawn(
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
        self._wait_http(
            "kube-controller-manager",
            f"https://127.0.0.1:{kcm_port}/healthz",
            insecure,
            lambda b: b == b"ok",
        )

    def _write_pki(self, pki: Path) -> None:
        ca = _make_ca()
        serving = _issue(
            ca,
            _name("kube-apiserver"),
            server=True,
            dns_names=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
            ips=("127.0.0.1", str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))),
        )
        admin = _issue(ca, _name("remediator-test-admin", "system:masters"), server=False)
        _write(pki / "ca.crt", _cert_pem(ca))
        _write(pki / "ca.key", _key_pem(ca), private=True)
        _write(pki / "apiserver.crt", _cert_pem(serving))
        _write(pki / "apiserver.key", _key_pem(serving), private=True)
        _write(pki / "admin.crt", _cert_pem(admin))
        _write(pki / "admin.key", _key_pem(admin), private=True)
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(
            pki / "sa.key",
            sa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ),
            private=True,
        )
        _write(
            pki / "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def _admin_ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        ctx.load_cert_chain(str(self.admin_cert_file), str(self.admin_key_file))
        return ctx

    def _write_kubeconfig(self, path: Path, user_name: str, user: dict[str, str]) -> Path:
        cfg: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "remediator-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": _b64(self.ca_file.read_bytes()),
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

    def _spawn(self, name: str, argv: list[str]) -> None:
        log_path = self.dir / f"{name}.log"
        log_file = log_path.open("wb")
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                start_new_session=True,  # a Ctrl-C in the test terminal goes to pytest only
            )
        except BaseException:
            log_file.close()
            raise
        self._components.append(_Component(name, proc, log_path, log_file))

    def _wait_http(
        self,
        name: str,
        url: str,
        ctx: ssl.SSLContext | None,
        ok: Callable[[bytes], bool],
    ) -> None:
        def probe() -> str | None:
            """None once ``url`` answers as ``ok`` wants, else what it answered."""
            for comp in self._components:
                if comp.proc.poll() is not None:
                    self._fail(f"{comp.name} exited with code {comp.proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:  # noqa: S310
                    body = resp.read()
                    return None if ok(body) else f"HTTP {resp.status}: {body[:300]!r}"
            except urllib.error.HTTPError as exc:
                return f"HTTP {exc.code}: {exc.read()[:300]!r}"
            except (OSError, ssl.SSLError) as exc:
                return repr(exc)

        try:
            eventually_blocking(
                probe,
                lambda answer: answer is None,
                timeout_s=self.start_timeout,
                interval_s=0.25,
                what=f"{name} ready at {url}",
            )
        except AssertionError as exc:
            self._fail(str(exc))

    def _fail(self, message: str) -> None:
        parts = [message]
        for comp in self._components:
            comp.log_file.flush()
            parts.append(f"--- last lines of {comp.log_path} ---\n{_tail(comp.log_path)}")
        raise ControlPlaneError("\n".join(parts))


def _distinct_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        p = free_port()
        if p not in ports:
            ports.append(p)
    return ports


async def _create_if_missing(call: Awaitable[object]) -> None:
    try:
        await call
    except ApiException as exc:
        if exc.status != 409:
            raise


async def api_client_from_kubeconfig(path: Path | str) -> k8s.ApiClient:
    """A kubernetes_asyncio ApiClient for a kubeconfig file; the caller closes it."""
    api_client: k8s.ApiClient = await k8s_config.new_client_from_config(
        config_file=str(path), persist_config=False
    )
    return api_client
