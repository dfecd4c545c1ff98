"""The guards' Redis over TLS as settings: ``redis.sentinel.tls`` and the ``redis.tls.*``
files, which ones fit together, the files checked at load, and what redis-py is given.

No server: the TLS Sentinel is tests/integration/test_guards_sentinel_tls.py's."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from redis.asyncio import Redis

from receiver.config import ConfigError, load_settings
from receiver.config.checks import exposed_files
from receiver.config.redis_tls import sentinel_tls_options, tls_options
from receiver.redis_connect import connect_redis
from tests.support.pki import issue, make_ca, name
from tests.support.redis_tls import RedisTls, write_redis_pki

# By the file each holds (the full names, which the tools' variable check reads).
VARIABLE = {
    "CA": "REMEDIATOR_REDIS_TLS_CA_FILE",
    "CERT": "REMEDIATOR_REDIS_TLS_CERT_FILE",
    "KEY": "REMEDIATOR_REDIS_TLS_KEY_FILE",
}
SENTINEL = {
    "REMEDIATOR_REDIS_MODE": "sentinel",
    "REMEDIATOR_REDIS_SENTINELS": "127.0.0.1:1",
    "REMEDIATOR_REDIS_SENTINEL_MASTER": "guards",
}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> RedisTls:
    return write_redis_pki(tmp_path_factory.mktemp("pki"))


def files(pki: RedisTls) -> dict[str, str]:
    return {
        "REMEDIATOR_REDIS_TLS_CA_FILE": str(pki.ca),
        "REMEDIATOR_REDIS_TLS_CERT_FILE": str(pki.client_cert),
        "REMEDIATOR_REDIS_TLS_KEY_FILE": str(pki.client_key),
    }


async def test_sentinel_over_tls_gives_redis_py_the_files(pki: RedisTls) -> None:
    s = load_settings(None, SENTINEL | {"REMEDIATOR_REDIS_SENTINEL_TLS": "true"} | files(pki))
    assert s.redis_tls
    assert sentinel_tls_options(s) == {
        "ssl": True,
        "ssl_ca_certs": str(pki.ca),
        "ssl_certfile": str(pki.client_cert),
        "ssl_keyfile": str(pki.client_key),
    }
    built = connect_redis(s, None)  # nothing connects yet
    try:
        assert built.tls
        assert built.sentinel is not None
        kwargs = built.sentinel.sentinel_kwargs
        assert (kwargs["ssl"], kwargs["ssl_ca_certs"]) == (True, str(pki.ca))
        client = built.client
        assert isinstance(client, Redis)
        assert client.connection_pool.connection_kwargs["ssl_certfile"] == str(pki.client_cert)
    finally:
        await built.close()


async def test_a_rediss_url_takes_the_files_too(pki: RedisTls) -> None:
    url = "rediss://127.0.0.1:1/0"
    s = load_settings(None, {"REMEDIATOR_REDIS_URL": url} | files(pki))
    assert tls_options(s)["ssl_keyfile"] == str(pki.client_key)
    built = connect_redis(s, url)
    try:
        client = built.client
        assert isinstance(client, Redis)
        assert client.connection_pool.connection_kwargs["ssl_ca_certs"] == str(pki.ca)
    finally:
        await built.close()


def test_tls_settings_from_yaml(tmp_path: Path, pki: RedisTls) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
redis:
  mode: sentinel
  sentinel:
    addresses: [a:1]
    master: guards
    tls: yes
  tls:
    ca_file: {pki.ca}
""",
        encoding="utf-8",
    )
    s = load_settings(config, {})
    assert s.redis_sentinel_tls
    assert s.redis_tls_ca_file == pki.ca
    assert s.redis_tls_cert_file is None


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        (
            {"REMEDIATOR_REDIS_URL": "redis://h:6379/0"},
            "REMEDIATOR_REDIS_TLS_CA_FILE is set but the guards' Redis is not reached over"
            " TLS: write rediss:// in REMEDIATOR_REDIS_URL",
        ),
        (
            {},  # the embedded Redis
            "REMEDIATOR_REDIS_TLS_CA_FILE is set but the guards' Redis is not reached over TLS",
        ),
        (
            SENTINEL,
            "is not reached over TLS: set redis.sentinel.tls (REMEDIATOR_REDIS_SENTINEL_TLS)",
        ),
    ],
)
def test_tls_files_without_tls_are_refused(
    pki: RedisTls, environ: dict[str, str], says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ | {"REMEDIATOR_REDIS_TLS_CA_FILE": str(pki.ca)})
    assert says in caught.value.message


@pytest.mark.parametrize(
    ("present", "missing"),
    [("CERT", "KEY"), ("KEY", "CERT")],
)
def test_a_client_certificate_needs_its_key(pki: RedisTls, present: str, missing: str) -> None:
    path = pki.client_cert if present == "CERT" else pki.client_key
    with pytest.raises(ConfigError) as caught:
        load_settings(
            None,
            {
                "REMEDIATOR_REDIS_URL": "rediss://h:6379/0",
                VARIABLE[present]: str(path),
            },
        )
    assert f"{VARIABLE[present]} is set without" in caught.value.message
    assert VARIABLE[missing] in caught.value.message


def test_a_file_given_twice_is_refused(pki: RedisTls) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            None,
            {
                "REMEDIATOR_REDIS_URL": f"rediss://h:6379/0?ssl_ca_certs={pki.ca}",
                "REMEDIATOR_REDIS_TLS_CA_FILE": str(pki.ca),
            },
        )
    assert "gives ssl_ca_certs too; use only one of them" in caught.value.message


def test_sentinel_tls_outside_sentinel_mode_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"REMEDIATOR_REDIS_SENTINEL_TLS": "true"})
    assert "REMEDIATOR_REDIS_SENTINEL_TLS is set but redis.mode" in caught.value.message


def _encrypted_key(pki: RedisTls, path: Path) -> Path:
    key = serialization.load_pem_private_key(pki.client_key.read_bytes(), None)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return path


def _another_key(pki: RedisTls, path: Path) -> Path:
    other = issue(make_ca(), name("someone-else"), server=False)
    path.write_bytes(
        other.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


@pytest.mark.parametrize(
    ("field", "make", "says"),
    [
        ("CA", lambda pki, p: p, "No such file or directory"),
        ("CA", lambda pki, p: (p.write_text("not a certificate"), p)[1], "NO_CERTIFICATE"),
        ("CA", lambda pki, p: pki.client_key, "NO_CERTIFICATE"),
        ("KEY", _another_key, "KEY_VALUES_MISMATCH"),
        ("KEY", _encrypted_key, "unencrypted private key"),
        ("CERT", lambda pki, p: pki.ca, "KEY_VALUES_MISMATCH"),
    ],
)
def test_a_tls_file_that_does_not_hold_what_it_should_names_its_setting(
    pki: RedisTls, tmp_path: Path, field: str, make: object, says: str
) -> None:
    environ = {"REMEDIATOR_REDIS_URL": "rediss://h:6379/0"} | files(pki)
    bad = make(pki, tmp_path / "bad.pem")  # type: ignore[operator]
    environ[VARIABLE[field]] = str(bad)
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ)
    message = caught.value.message
    assert VARIABLE[field] in message
    assert str(bad) in message
    assert says in message


def test_a_key_others_may_read_is_told(pki: RedisTls, tmp_path: Path) -> None:
    key = tmp_path / "client.key"
    key.write_bytes(pki.client_key.read_bytes())
    key.chmod(0o644)
    ca = tmp_path / "ca.crt"
    ca.write_bytes(pki.ca.read_bytes())
    ca.chmod(0o666)
    s = load_settings(
        None,
        {
            "REMEDIATOR_REDIS_URL": "rediss://h:6379/0",
            "REMEDIATOR_REDIS_TLS_CA_FILE": str(ca),
            "REMEDIATOR_REDIS_TLS_CERT_FILE": str(pki.client_cert),
            "REMEDIATOR_REDIS_TLS_KEY_FILE": str(key),
        },
    )
    notices = {n.message.split(":")[0]: n for n in exposed_files(s)}
    assert "chmod o-r" in notices["REMEDIATOR_REDIS_TLS_KEY_FILE"].message
    # Whoever may change the CA may stand in for Redis: loud, as a rule file others may write.
    assert notices["REMEDIATOR_REDIS_TLS_CA_FILE"].loud
    assert stat.S_IMODE(pki.client_cert.stat().st_mode) & stat.S_IWOTH == 0
    assert "REMEDIATOR_REDIS_TLS_CERT_FILE" not in notices
