"""The test control plane's PKI (tests/support/kube.py): a CA, the kube-apiserver's serving
certificate, an admin client certificate and the service-account signing key, made afresh for
each control plane (EC P-256 certificates valid for a week; an RSA service-account key).
"""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.pki import cert_pem, issue, key_pem, make_ca, name, write


def b64(data: bytes) -> str:
    """``data`` in base64, as a kubeconfig embeds certificates and keys."""
    return base64.b64encode(data).decode("ascii")


def write_pki(pki: Path, service_cidr: str) -> None:
    """Write into the directory ``pki`` a CA (``ca.crt``, ``ca.key``), the apiserver's serving
    pair (``apiserver.*``, valid for localhost, 127.0.0.1, the ``kubernetes`` service names and
    the first address of ``service_cidr``), an admin client pair in ``system:masters``
    (``admin.*``) and the service-account signing key (``sa.key``, ``sa.pub``). Keys are
    written 0600."""
    ca = make_ca()
    serving = issue(
        ca,
        name("kube-apiserver"),
        server=True,
        dns_names=(
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ),
        ips=("127.0.0.1", str(next(ipaddress.ip_network(service_cidr).hosts()))),
    )
    admin = issue(ca, name("remediator-test-admin", "system:masters"), server=False)
    write(pki / "ca.crt", cert_pem(ca))
    write(pki / "ca.key", key_pem(ca), private=True)
    write(pki / "apiserver.crt", cert_pem(serving))
    write(pki / "apiserver.key", key_pem(serving), private=True)
    write(pki / "admin.crt", cert_pem(admin))
    write(pki / "admin.key", key_pem(admin), private=True)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write(
        pki / "sa.key",
        sa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        private=True,
    )
    write(
        pki / "sa.pub",
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )
