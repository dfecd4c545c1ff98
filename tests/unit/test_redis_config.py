"""How the guards reach Redis: the settings of Sentinel and Cluster, their errors, the key tag.

Pure: nothing here connects. The real servers are in tests/integration/test_guards_cluster.py
and test_guards_sentinel.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis, RedisCluster

from receiver.config import ConfigError, load_settings
from receiver.config.redis_mode import RedisMode
from receiver.guards.policy import CLUSTER_KEY_PREFIX, GuardKeys, hash_tag
from receiver.redis_connect import connect_redis
from receiver.startup import storage_text


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_sentinel_settings_from_variables_and_files(tmp_path: Path) -> None:
    password = write(tmp_path / "redis-password", "master-pw\n")
    sentinel_password = write(tmp_path / "sentinel-password", "sentinel-pw\n")
    s = load_settings(
        None,
        {
            "REMEDIATOR_REDIS_MODE": "Sentinel",
            "REMEDIATOR_REDIS_SENTINELS": "sentinel-0:26380, sentinel-1, [::1]:26381",
            "REMEDIATOR_REDIS_SENTINEL_MASTER": "guards",
            "REMEDIATOR_REDIS_PASSWORD_FILE": str(password),
            "REMEDIATOR_REDIS_SENTINEL_PASSWORD_FILE": str(sentinel_password),
        },
    )
    assert s.redis_mode is RedisMode.SENTINEL
    assert s.redis_sentinels == ("sentinel-0:26380", "sentinel-1:26379", "[::1]:26381")
    assert s.redis_sentinel_master == "guards"
    assert s.redis_password is not None
    assert s.redis_password.get_secret_value() == "master-pw"
    assert s.redis_sentinel_password is not None
    assert s.redis_sentinel_password.get_secret_value() == "sentinel-pw"
    # Sentinel is an external Redis: nothing embedded, and the standalone key layout.
    assert s.redis_external
    assert storage_text(s).endswith("external Redis (REMEDIATOR_REDIS_MODE=sentinel)")
    assert s.guard_settings().key_prefix == "remediator:"
    assert "master-pw" not in repr(s)
    assert "sentinel-pw" not in repr(s)


def test_sentinel_settings_from_yaml(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config.yaml",
        """
redis:
  mode: sentinel
  password: inline-pw
  sentinel:
    addresses: [a:1, b:2]
    master: mymaster
    password: s-pw
""",
    )
    s = load_settings(config, {})
    assert (s.redis_sentinels, s.redis_sentinel_master) == (("a:1", "b:2"), "mymaster")
    assert s.redis_sentinel_password is not None


def test_cluster_settings_tag_every_guard_key() -> None:
    s = load_settings(
        None, {"REMEDIATOR_REDIS_MODE": "cluster", "REMEDIATOR_REDIS_URL": "redis://node-0:7000"}
    )
    assert s.redis_mode is RedisMode.CLUSTER
    prefix = s.guard_settings().key_prefix
    assert prefix == CLUSTER_KEY_PREFIX
    assert GuardKeys(prefix).require_one_slot() == "remediator"
    # The default standalone layout is the one earlier versions wrote, untagged.
    standalone = load_settings(None, {"REMEDIATOR_REDIS_URL": "redis://r:6379/0"})
    assert standalone.guard_settings().key_prefix == "remediator:"


@pytest.mark.parametrize(
    ("environ", "says"),
    [
        ({"REMEDIATOR_REDIS_MODE": "sentinels"}, "REMEDIATOR_REDIS_MODE: 'sentinels' is not one"),
        (
            {"REMEDIATOR_REDIS_MODE": "sentinel", "REMEDIATOR_REDIS_SENTINEL_MASTER": "m"},
            "REMEDIATOR_REDIS_MODE=sentinel needs redis.sentinel.addresses"
            " (REMEDIATOR_REDIS_SENTINELS)",
        ),
        (
            {"REMEDIATOR_REDIS_MODE": "sentinel", "REMEDIATOR_REDIS_SENTINELS": "s:26379"},
            "needs redis.sentinel.master (REMEDIATOR_REDIS_SENTINEL_MASTER)",
        ),
        (
            {
                "REMEDIATOR_REDIS_MODE": "sentinel",
                "REMEDIATOR_REDIS_SENTINELS": "s",
                "REMEDIATOR_REDIS_SENTINEL_MASTER": "m",
                "REMEDIATOR_REDIS_URL": "redis://r:6379/0",
            },
            "REMEDIATOR_REDIS_URL names one server",
        ),
        (
            {"REMEDIATOR_REDIS_SENTINELS": "s:26379"},
            "REMEDIATOR_REDIS_SENTINELS is set but redis.mode (REMEDIATOR_REDIS_MODE) is"
            " standalone",
        ),
        (
            {"REMEDIATOR_REDIS_MODE": "cluster"},
            "REMEDIATOR_REDIS_MODE=cluster needs redis_url (REMEDIATOR_REDIS_URL)",
        ),
        (
            {"REMEDIATOR_REDIS_MODE": "cluster", "REMEDIATOR_REDIS_URL": "unix:///run/r.sock"},
            "a cluster is reached over TCP",
        ),
        (
            {"REMEDIATOR_REDIS_MODE": "cluster", "REMEDIATOR_REDIS_URL": "redis://n:7000/2"},
            "a cluster has database 0 only",
        ),
        # redis-py reads a path int() refuses as no database and uses 0 in silence: "²" passed
        # isdigit(); an Arabic-Indic 3 would be database 3 to int(), never written so.
        *(
            (
                {"REMEDIATOR_REDIS_URL": f"redis://r:6379/{path}"},
                "REMEDIATOR_REDIS_URL: the database (the URL's path) must be a number",
            )
            for path in ("x", "²", "٣")
        ),
        (
            {"REMEDIATOR_REDIS_SENTINELS": "host:port"},
            "REMEDIATOR_REDIS_SENTINELS: item 1: host 'host': the port is not a number",
        ),
        (
            {"REMEDIATOR_REDIS_PASSWORD": "other-secret"},
            "REMEDIATOR_REDIS_PASSWORD is set but redis_url (REMEDIATOR_REDIS_URL) is not",
        ),
        (
            {
                "REMEDIATOR_REDIS_URL": "redis://:url-secret@r:6379/0",
                "REMEDIATOR_REDIS_PASSWORD": "other-secret",
            },
            "REMEDIATOR_REDIS_URL holds a password and REMEDIATOR_REDIS_PASSWORD is set",
        ),
    ],
)
def test_redis_settings_that_do_not_fit_name_the_key(environ: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ)
    assert says in caught.value.message
    assert "secret" not in caught.value.message


def test_a_password_in_a_file_and_inline_is_refused(tmp_path: Path) -> None:
    password = write(tmp_path / "pw", "x\n")
    with pytest.raises(ConfigError, match=r"REMEDIATOR_REDIS_PASSWORD and .*_FILE are both set"):
        load_settings(
            None,
            {"REMEDIATOR_REDIS_PASSWORD": "y", "REMEDIATOR_REDIS_PASSWORD_FILE": str(password)},
        )


async def test_each_mode_builds_redis_pys_own_client_without_connecting() -> None:
    cluster = connect_redis(
        load_settings(
            None,
            {"REMEDIATOR_REDIS_MODE": "cluster", "REMEDIATOR_REDIS_URL": "redis://127.0.0.1:1"},
        ),
        "redis://127.0.0.1:1",
    )
    assert isinstance(cluster.client, RedisCluster)
    sentinel_settings = load_settings(
        None,
        {
            "REMEDIATOR_REDIS_MODE": "sentinel",
            "REMEDIATOR_REDIS_SENTINELS": "127.0.0.1:1",
            "REMEDIATOR_REDIS_SENTINEL_MASTER": "guards",
            "REMEDIATOR_REDIS_PASSWORD": "pw",
        },
    )
    sentinel = connect_redis(sentinel_settings, None)
    assert isinstance(sentinel.client, Redis)
    assert sentinel.sentinel is not None
    assert "guards" in sentinel.where
    assert "pw" not in sentinel.where
    one = connect_redis(load_settings(None, {}), "redis://:pw@127.0.0.1:1/0")
    assert isinstance(one.client, Redis)
    assert one.where == "127.0.0.1:1"
    for built in (cluster, sentinel, one):
        await built.close()


@pytest.mark.parametrize(
    ("key", "tag"),
    [
        ("{remediator}:pause", "remediator"),
        ("a:{x}:{y}", "x"),
        ("{}:{x}", None),  # an empty first tag hashes the whole key
        ("no-tag", None),
        ("open{only", None),
        ("remediator:lock:Deployment/shop/{cart}", "cart"),
    ],
)
def test_hash_tag_follows_the_cluster_specification(key: str, tag: str | None) -> None:
    assert hash_tag(key) == tag


def test_a_prefix_without_a_tag_cannot_keep_one_slot() -> None:
    with pytest.raises(ValueError, match="no hash tag"):
        GuardKeys("remediator:").require_one_slot()
    with pytest.raises(ValueError, match="no hash tag"):
        GuardKeys("{}remediator:").require_one_slot()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"REMEDIATOR_REDIS_URL": ""}, {"redis_url": None}),
        ({"REMEDIATOR_REDIS_URL": "  "}, {"redis_url": None}),
        (
            {"REMEDIATOR_REDIS_URL": "redis://r:6379/0", "REMEDIATOR_REDIS_PASSWORD": ""},
            {"redis_password": None},
        ),
        (
            {
                "REMEDIATOR_REDIS_MODE": "sentinel",
                "REMEDIATOR_REDIS_SENTINELS": "s",
                "REMEDIATOR_REDIS_SENTINEL_MASTER": "m",
                "REMEDIATOR_REDIS_SENTINEL_PASSWORD": " ",
            },
            {"redis_sentinel_password": None},
        ),
    ],
)
def test_a_blank_redis_setting_is_unset(environ: dict[str, str], expected: dict[str, None]) -> None:
    """As every other setting: a variable left blank (``value: ""`` in a chart) is unset, not
    an empty URL refused, nor an empty password sent to Redis."""
    settings = load_settings(None, environ)
    for field, value in expected.items():
        assert getattr(settings, field) == value, field


def test_a_blank_sentinel_master_is_missing() -> None:
    # Written (blank) as a variable: named as written.
    with pytest.raises(ConfigError, match="sentinel needs REMEDIATOR_REDIS_SENTINEL_MASTER"):
        load_settings(
            None,
            {
                "REMEDIATOR_REDIS_MODE": "sentinel",
                "REMEDIATOR_REDIS_SENTINELS": "s",
                "REMEDIATOR_REDIS_SENTINEL_MASTER": "  ",
            },
        )


@pytest.mark.parametrize(
    "address",
    [
        ":secret-pw@sentinel-0:26379",
        "redis://:secret-pw@sentinel-0:26379",
        "admin:secret-pw@sentinel-0:26379",
        "sentinel-0:secret-pw",
    ],
)
def test_a_sentinel_address_that_holds_a_password_is_refused_without_it(address: str) -> None:
    """A URL or ``user:password@`` pasted into the sentinels' addresses (or a password where
    the port goes): the error names the item by its place, never its text."""
    environ = {
        "REMEDIATOR_REDIS_MODE": "sentinel",
        "REMEDIATOR_REDIS_SENTINELS": f"sentinel-1:26379,{address}",
        "REMEDIATOR_REDIS_SENTINEL_MASTER": "m",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ)
    assert caught.value.message.startswith("REMEDIATOR_REDIS_SENTINELS: item 2: ")
    assert "secret-pw" not in caught.value.message


@pytest.mark.parametrize(
    ("key", "says"),
    [
        ("password_file", "redis.password_file is set but"),
        ("sentinel:\n    password_file", "redis.sentinel.password_file is set but"),
    ],
)
def test_a_password_from_a_file_that_does_not_fit_names_the_file_key(
    tmp_path: Path, key: str, says: str
) -> None:
    """The key the user wrote is the file's: naming redis.password, which they did not set,
    would send them looking for it."""
    password = write(tmp_path / "pw", "x\n")
    config = write(tmp_path / "c.yaml", f"redis:\n  {key}: {password}\n")
    with pytest.raises(ConfigError, match=says):
        load_settings(config, {})


@pytest.mark.parametrize("path", ["/abc", "/3/x", "/-1"])
def test_a_database_that_is_no_number_is_refused(path: str) -> None:
    """redis-py reads ``/abc`` as no database at all and uses database 0, silently: another
    database than the one written, shared with whatever else uses 0."""
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {"REMEDIATOR_REDIS_URL": f"redis://:url-secret@r:6379{path}"})
    assert caught.value.message.startswith("REMEDIATOR_REDIS_URL: the database ")
    assert "secret" not in caught.value.message


def test_a_database_number_is_taken() -> None:
    settings = load_settings(None, {"REMEDIATOR_REDIS_URL": "redis://r:6379/3"})
    assert settings.redis_url is not None


def test_a_sentinel_port_of_zero_is_refused_not_read_as_the_default() -> None:
    """``s:0`` is a port no sentinel listens on; reading it as "left out" (26379) would send the
    service to another sentinel than the one written, in silence."""
    environ = {
        "REMEDIATOR_REDIS_MODE": "sentinel",
        "REMEDIATOR_REDIS_SENTINELS": "127.0.0.1:0",
        "REMEDIATOR_REDIS_SENTINEL_MASTER": "m",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ)
    assert caught.value.message.startswith("REMEDIATOR_REDIS_SENTINELS: item 1: ")


@pytest.mark.parametrize(
    ("address", "example"),
    [("s:", "s:26379"), ("[::1]:", "[::1]:26379"), ("[::1]:0", "[::1]:26379")],
)
def test_a_sentinel_port_left_empty_is_refused_with_an_example_that_parses(
    address: str, example: str
) -> None:
    """``s:`` (a colon and no port) was read as "left out" (26379), as port 0 was; an IPv6
    host's example is written in brackets, as it must be to parse."""
    environ = {
        "REMEDIATOR_REDIS_MODE": "sentinel",
        "REMEDIATOR_REDIS_SENTINELS": address,
        "REMEDIATOR_REDIS_SENTINEL_MASTER": "m",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ)
    assert caught.value.message.startswith("REMEDIATOR_REDIS_SENTINELS: item 1: ")
    assert f"(e.g. {example})" in caught.value.message
