"""`remediator serve` never writes a secret it was given: not in the audit log (the
``service.started`` row records every setting), not in its log output, not in its banner; and a
URL written in the configuration itself that holds a credential is refused at start-up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.served import ServeFactory, cli, env_for, serve_to_exit, stop


def _secret(path: Path, text: str) -> str:
    path.write_text(text + "\n")
    path.chmod(0o600)
    return path.name


async def test_no_configured_secret_reaches_the_audit_log_or_the_log_output(
    serve: ServeFactory, tmp_path: Path, embedded_dir: Path
) -> None:
    secrets = {
        "endpoint-url": "http://deploy:url-pw-qzxv@peer.invalid:1/hook?api_key=url-key-qzxv",
        "endpoint-auth": "Bearer header-secret-qzxv",
        "slack-url": "https://hooks.slack.invalid/services/T0/B0/slack-path-qzxv",
    }
    for name, text in secrets.items():
        _secret(tmp_path / name, text)
    env = {
        "REMEDIATOR_HTTP_ENDPOINTS": (
            f'{{"flush": {{"url_file": "{tmp_path}/endpoint-url",'
            f' "header_files": {{"Authorization": "{tmp_path}/endpoint-auth"}}}}}}'
        ),
        "REMEDIATOR_NOTIFY_CHANNELS": (
            f'{{"oncall": {{"kind": "slack", "url_file": "{tmp_path}/slack-url"}}}}'
        ),
        "REMEDIATOR_EXTERNAL_URL": "https://remediator.example",
    }
    served = serve(env)
    assert stop(served) == 0
    code, export, err = await cli(env_for(embedded_dir) | env, "audit", "export")
    assert code == 0, err
    assert '"service.started"' in export
    assert '"flush"' in export  # the endpoint is recorded, by name
    log = "".join(served.output)
    # The generated ones too: the embedded servers' passwords and the tokens.
    kept = [
        (embedded_dir / name).read_text().strip()
        for name in ("postgres-password", "redis-password", "webhook-token", "operator-token")
    ]
    for secret in kept:
        assert secret not in export
        assert secret not in log  # the banner names the tokens' files instead
    # No part of the URLs' and the header's secrets. The marker has letters no hash, id or
    # worker name (all hex) can hold, as a hex one could turn up inside an audit row's hash.
    assert "qzxv" not in export
    assert "qzxv" not in log


def test_a_url_with_a_password_in_the_configuration_itself_is_refused(
    embedded_dir: Path,
) -> None:
    env = env_for(embedded_dir) | {
        "REMEDIATOR_HTTP_ENDPOINTS": '{"x": {"url": "http://user:s3cretpw@h/"}}',
    }
    proc = serve_to_exit(env)
    assert proc.returncode == 2
    assert "REMEDIATOR_HTTP_ENDPOINTS.x: the URL holds credentials" in proc.stderr
    assert "url_file" in proc.stderr
    assert "s3cretpw" not in proc.stdout + proc.stderr


async def test_service_started_records_an_inline_endpoint_url_as_its_origin_only(
    serve: ServeFactory, embedded_dir: Path
) -> None:
    # Nothing in this URL looks like a credential, yet an opaque path segment or query value
    # may be one: the append-only audit log keeps scheme://host[:port] and no more.
    # The marker has letters no hash, id or worker name (all hex) can hold: "9c1e" was found
    # inside an audit row's hash one run in a few hundred.
    url = "https://peer.invalid:8443/opaque/path-qzxw?region=q-qzxw"
    env = {"REMEDIATOR_HTTP_ENDPOINTS": json.dumps({"flush": {"url": url}})}
    served = serve(env)
    assert stop(served) == 0
    code, export, err = await cli(env_for(embedded_dir) | env, "audit", "export")
    assert code == 0, err
    (started,) = [
        row for row in map(json.loads, export.splitlines()) if row["kind"] == "service.started"
    ]
    assert started["data"]["settings"]["http_endpoints"]["flush"]["url"] == (
        "https://peer.invalid:8443"
    )
    assert "qzxw" not in export
    assert "qzxw" not in "".join(served.output)


def test_a_kubeconfig_that_cannot_be_loaded_stops_the_start_in_one_line(
    embedded_dir: Path, tmp_path: Path
) -> None:
    # An unterminated quote around the token: kubernetes_asyncio's YAML error was a traceback
    # (exit 1) that named neither the setting nor what to fix.
    kubeconfig = tmp_path / "kubeconfig"
    _secret(kubeconfig, 'apiVersion: v1\nusers:\n- name: u\n  user:\n    token: "kube-tok-qzxk')
    env = env_for(embedded_dir) | {"REMEDIATOR_KUBECONFIG": str(kubeconfig)}
    proc = serve_to_exit(env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert (
        "error: configuration: kubernetes.kubeconfig (REMEDIATOR_KUBECONFIG): cannot load the"
        f" kubeconfig {kubeconfig}: it is not YAML (found unexpected end of stream at line 6)"
    ) in proc.stderr
    assert "qzxk" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("queue-host-qzxr:6379", "Redis URL must specify one of the following schemes"),
        (
            "redis://:pw-qzxr-0123456789@127.0.0.1:1/0?socket_timeout=soon",
            "Invalid value for 'socket_timeout' in connection URL.",
        ),
    ],
)
def test_a_redis_connection_url_redis_py_cannot_take_stops_the_start_in_one_line(
    embedded_dir: Path, tmp_path: Path, url: str, why: str
) -> None:
    # The checks at load let both through (a URL without a scheme, a query value that is no
    # number); redis-py refused them as serve built its clients: a traceback, exit 1.
    _secret(tmp_path / "jobs-url", url)
    queues = {"e": {"layout": "list", "key": "e", "dead_letter_key": "e:dead"}}
    env = env_for(embedded_dir) | {
        "REMEDIATOR_REDIS_QUEUES": json.dumps(
            {"jobs": {"url_file": str(tmp_path / "jobs-url"), "queues": queues}}
        )
    }
    proc = serve_to_exit(env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert (
        f"error: configuration: redis.queues.jobs.url_file: not a Redis URL: {why}" in proc.stderr
    )
    assert "qzxr" not in proc.stdout + proc.stderr


async def test_a_kubeconfig_set_that_names_no_file_stops_the_start_and_is_not_recorded(
    embedded_dir: Path,
) -> None:
    # A token where the path goes: serve ran every Kubernetes step dry, and service.started
    # wrote the value into the append-only audit log.
    env = env_for(embedded_dir) | {"REMEDIATOR_KUBECONFIG": "eyJhbGciOiJSUzI1NiJ9.kube-qzxk"}
    proc = serve_to_exit(env)
    assert proc.returncode == 2, proc.stderr
    assert "no kubeconfig file at (its path not shown" in proc.stderr
    assert "qzxk" not in proc.stdout + proc.stderr
    code, export, err = await cli(env_for(embedded_dir), "audit", "export")
    assert code == 0, err
    assert '"service.started"' not in export
    assert "qzxk" not in export
