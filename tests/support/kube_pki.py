"""The test control plane's PKI (tests/support/kube.py): a CA, the kube-apiserver's serving
certificate, an admin client certificate and the service-account signing key, made afresh for
each control plane (EC P-256 certificates valid for a week; an RSA service-account key).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


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


def b64(data: bytes) -> str:
    """``data`` in base64, as a kubeconfig embeds certificates and keys."""
    return base64.b64encode(data).decode("ascii")


def write_pki(pki: Path, service_cidr: str) -> None:
    """Write into the directory ``pki`` a CA (``ca.crt``, ``ca.key``), the apiserver's serving
    pair (``apiserver.*``, valid for localhost, 127.0.0.1, the ``kubernetes`` service names and
    the first address of ``service_cidr``), an admin client pair in ``system:masters``
    (``admin.*``) and the service-account signing key (``sa.key``, ``sa.pub``). Keys are
    written 0600."""
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
        ips=("127.0.0.1", str(next(ipaddress.ip_network(service_cidr).hosts()))),
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
