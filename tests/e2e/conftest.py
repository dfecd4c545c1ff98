"""The end-to-end stack of the runbook tests, all real, one per Alertmanager version:

    metrics endpoint (aiohttp, series the test sets)
      <- Prometheus (Debian's; the SHIPPED alert rules with `for: 1s`, scrape/evaluate every 1s)
      -> Alertmanager (Debian's 0.25 or 0.35 from its Go module; the SHIPPED routing, group_wait
         and group_interval 1s)
      -> remediator serve (subprocess; the SHIPPED rules re-timed, tests/support/remediator.py)
         -> kube-apiserver (tests/support/kube.py) as the ServiceAccount bound with deploy/'s
            ClusterRole in each test namespace
         -> PostgreSQL (database `shop`, as the README's least-privilege role)
         -> Redis (connection `jobs`, queue `emails`: a list with a dead-letter list)
         -> notification sink (aiohttp; channel `oncall`, also the approvals' channel)

The stack is shared by the tests of one Alertmanager version (package scope: one version after
the other, all stopped before other folders' tests run); each test works in its own namespace,
Deployment and series. The logs of every process are printed when a test fails. The delivery
tests (test_alertmanager_*.py) run against both versions, since how a notification arrives is
Alertmanager's; the runbook tests against the current one only (``CURRENT_ALERTMANAGER``):
what they test is the service's playbook, and twice they took a minute and more of every CI run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import redis
import yaml
from kubernetes_asyncio import client as k8s

from receiver.embedded.process import free_port
from tests.support import alertmanagers, prometheus, remediator
from tests.support.alertmanagers import Alertmanager
from tests.support.kube import ControlPlane
from tests.support.peers import MetricsEndpoint, Sink
from tests.support.postgres import PostgresServer
from tests.support.redis import RedisServer

ROOT = Path(__file__).resolve().parents[2]
RBAC = ROOT / "deploy" / "base" / "rbac.yaml"
OPERATOR, OPERATOR_TOKEN = "alice", "alice-e2e-operator-" + secrets.token_hex(8)
SA_NAMESPACE, SA_NAME = "remediator-e2e", "alert-remediator"
CLUSTER_ROLE = "alert-remediator-actions-e2e"
APP_ROLE = "app"  # the role rules/database-connections.yaml allow-lists
QUEUE = {"layout": "list", "key": "emails", "dead_letter_key": "emails:dead"}
GUARDS_DB, QUEUES_DB = 1, 2  # Redis databases: the guards', the application's queues
# The ACL docs/playbooks/QueueBacklog.md gives the remediator's user for a `list` queue: its two
# keys, the commands the action sends (the script's LMOVE and LLEN are checked too), nothing else.
QUEUE_USER = "remediator_jobs"
QUEUE_ACL = "resetkeys ~emails ~emails:dead resetchannels -@all +ping +select +llen +eval +lmove"


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    item.stash.setdefault(_FAILED, False)
    if report.failed:
        item.stash[_FAILED] = True
    return report


@dataclass
class Database:
    """The application database the PostgreSQL runbook acts on."""

    name: str  # the real database; the remediator knows it as connection `shop`
    admin_url: str  # as the superuser
    app_url: str  # as the application's role
    remediator_dsn: str  # as the least-privilege role


async def _admin(pg_server: PostgresServer) -> asyncpg.Connection:
    """A superuser connection, opened when needed: other folders' tests stop and start the
    session's PostgreSQL, so none is held across tests."""
    return await asyncpg.connect(pg_server.url("postgres"))


@pytest.fixture(scope="package")
async def e2e_database(pg_server: PostgresServer) -> AsyncIterator[Database]:
    suffix = os.urandom(3).hex()
    name, role = f"shop_e2e_{suffix}", f"remediator_e2e_{suffix}"
    admin = await _admin(pg_server)
    created_app_role = False
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        if not await admin.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", APP_ROLE):
            await admin.execute(f"CREATE ROLE {APP_ROLE} LOGIN")
            created_app_role = True
        # The README's role: no superuser, two predefined roles, no membership in app roles.
        await admin.execute(
            f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
        )
        await admin.execute(f"GRANT pg_signal_backend, pg_read_all_stats TO {role}")
    finally:
        await admin.close()
    url = pg_server.url(name)
    try:
        yield Database(name, url, _as_role(url, APP_ROLE), _as_role(url, role))
    finally:
        admin = await _admin(pg_server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
            if created_app_role:
                await admin.execute(f"DROP ROLE IF EXISTS {APP_ROLE}")
        finally:
            await admin.close()


def _as_role(url: str, role: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{role}@{rest.rpartition('@')[2]}"


async def _remediator_kubeconfig(cp: ControlPlane, path: Path) -> Path:
    """A kubeconfig for the remediator's ServiceAccount; deploy/'s ClusterRole (renamed, so it
    cannot collide with tests that apply deploy/ itself) exists, bound per test namespace."""
    role = next(d for d in yaml.safe_load_all(RBAC.read_text()) if d["kind"] == "ClusterRole")
    api = await cp.admin_api_client()
    try:
        rbac = k8s.RbacAuthorizationV1Api(api)
        existing = await rbac.list_cluster_role(field_selector=f"metadata.name={CLUSTER_ROLE}")
        if not existing.items:
            body: Any = {**role, "metadata": {**role["metadata"], "name": CLUSTER_ROLE}}
            await rbac.create_cluster_role(body)
    finally:
        await api.close()
    token = await cp.service_account_token(SA_NAMESPACE, SA_NAME)
    return cp.write_kubeconfig_for_token(token, path)


@dataclass
class Stack:
    """One running stack; see the module docstring."""

    version: str
    metrics: MetricsEndpoint
    sink: Sink
    prometheus: prometheus.Prometheus
    alertmanager: Alertmanager
    service: remediator.Remediator
    api: remediator.Api
    session: aiohttp.ClientSession
    database: Database
    queues_url: str  # the Redis database of the application's queues

    def logs(self) -> str:
        return "\n".join(
            [
                f"----- remediator ({self.service.url}) -----\n{self.service.log_tail()}",
                f"----- alertmanager {self.version} -----\n{self.alertmanager.log_tail()}",
                f"----- prometheus -----\n{self.prometheus.log_tail(5000)}",
                f"----- notifications -----\n{json.dumps(self.sink.received, indent=1)[-8000:]}",
            ]
        )


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@dataclass
class Backends:
    """Where the service keeps its state, and the application systems it acts on."""

    store_url: str  # its PostgreSQL database
    guards_url: str  # its Redis
    database: Database  # the application's PostgreSQL database (connection `shop`)
    queues_url: str  # the application's Redis (connection `jobs`), as the ACL'd user
    kubeconfig: Path  # the ServiceAccount's


def _service_env(tmp: Path, backends: Backends, sink: Sink) -> tuple[dict[str, str], int]:
    port = free_port()
    (tmp / "operators").mkdir()
    _write(tmp / "operators" / OPERATOR, OPERATOR_TOKEN)
    (tmp / "keys").mkdir()
    _write(tmp / "keys" / "k1", secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATOR_")}
    env.pop("KUBECONFIG", None)
    env.update(
        HOME=str(tmp),
        REMEDIATOR_DATA_DIR=str(tmp / "data"),
        REMEDIATOR_LOG_FORMAT="json",
        REMEDIATOR_RULES_DIR=str(remediator.retimed_rules(tmp / "rules")),
        REMEDIATOR_DATABASE_URL=backends.store_url,
        REMEDIATOR_REDIS_URL=backends.guards_url,
        REMEDIATOR_WEBHOOK_TOKEN_FILE=str(_write(tmp / "webhook-token", secrets.token_hex(24))),
        REMEDIATOR_OPERATOR_TOKENS_DIR=str(tmp / "operators"),
        REMEDIATOR_KUBECONFIG=str(backends.kubeconfig),
        REMEDIATOR_POSTGRES_DATABASES=json.dumps(
            {"shop": {"dsn_file": str(_write(tmp / "shop-dsn", backends.database.remediator_dsn))}}
        ),
        REMEDIATOR_REDIS_QUEUES=json.dumps(
            {
                "jobs": {
                    "url_file": str(_write(tmp / "jobs-url", backends.queues_url)),
                    "queues": {"emails": QUEUE},
                }
            }
        ),
        REMEDIATOR_NOTIFY_CHANNELS=json.dumps(
            {"oncall": {"kind": "webhook", "url_file": str(_write(tmp / "sink-url", sink.url))}}
        ),
        REMEDIATOR_EXTERNAL_URL=f"http://127.0.0.1:{port}",
        REMEDIATOR_APPROVAL_KEYS_DIR=str(tmp / "keys"),
        REMEDIATOR_APPROVERS_FILE=str(_write(tmp / "approvers.yaml", f"default: [{OPERATOR}]\n")),
        REMEDIATOR_APPROVAL_NOTIFY_CHANNEL="oncall",
        # The tests of one stack share the global budget (10 an hour by default).
        REMEDIATOR_BUDGET_COUNT="100",
    )
    return env, port


def _version_id(version: str) -> str:
    return f"am-{version}"


# A module mark: its tests take the stack of the current Alertmanager only (the last of
# VERSIONS), overriding the fixture's parameters.
CURRENT_ALERTMANAGER = pytest.mark.parametrize(
    "e2e_stack", alertmanagers.VERSIONS[-1:], indirect=True, scope="package", ids=_version_id
)


@pytest.fixture(scope="package", params=alertmanagers.VERSIONS, ids=_version_id)
async def e2e_stack(
    request: pytest.FixtureRequest,
    control_plane: ControlPlane,
    pg_server: PostgresServer,
    redis_server: RedisServer,
    e2e_database: Database,
) -> AsyncIterator[Stack]:
    version: str = request.param
    alertmanagers.alertmanager_binary(version)  # skip (or fail in CI) before starting anything
    prometheus.retimed_rules()  # the shipped file parses
    tmp = Path(tempfile.mkdtemp(prefix=f"remediator-e2e-{version}-"))
    redis_server.ensure_running()
    base = f"redis://{redis_server.host}:{redis_server.port}"
    password = secrets.token_hex(16)
    with redis.Redis(host=redis_server.host, port=redis_server.port) as client:
        for db in (GUARDS_DB, QUEUES_DB):
            client.execute_command("SELECT", db)
            client.flushdb()
        client.execute_command("ACL", "SETUSER", QUEUE_USER, "reset", "on", f">{password}")
        client.execute_command("ACL", "SETUSER", QUEUE_USER, *QUEUE_ACL.split())
    store_db = f"remediator_e2e_{uuid.uuid4().hex[:8]}"
    admin = await _admin(pg_server)
    try:
        await admin.execute(f'CREATE DATABASE "{store_db}"')
    finally:
        await admin.close()
    kubeconfig = await _remediator_kubeconfig(control_plane, tmp / "kubeconfig")
    metrics, sink = MetricsEndpoint(), Sink()
    await metrics.start()
    await sink.start()
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
    started: list[Any] = []
    try:
        backends = Backends(
            store_url=pg_server.url(store_db),
            guards_url=f"{base}/{GUARDS_DB}",
            database=e2e_database,
            queues_url=f"redis://{QUEUE_USER}:{password}@{base.removeprefix('redis://')}/{QUEUES_DB}",
            kubeconfig=kubeconfig,
        )
        env, port = _service_env(tmp, backends, sink)
        service = remediator.start(env, port)
        started.append(service)
        token_file = Path(env["REMEDIATOR_WEBHOOK_TOKEN_FILE"])
        am = alertmanagers.start(
            f"am-{version}",
            version,
            tmp / "alertmanager",
            alertmanagers.shipped_config(service.url, token_file),
        )
        started.append(am)
        prom = prometheus.start(
            tmp / "prometheus", prometheus.retimed_rules("1s"), metrics.url, am.host_port
        )
        started.append(prom)
        await alertmanagers.ready(session, am)
        await prom.ready(session)
        api = remediator.Api(session, service.url, OPERATOR_TOKEN)
        yield Stack(
            version,
            metrics,
            sink,
            prom,
            am,
            service,
            api,
            session,
            e2e_database,
            f"{base}/{QUEUES_DB}",
        )
    finally:
        for process in reversed(started):
            process.stop()
        await session.close()
        await metrics.close()
        await sink.close()
        admin = await _admin(pg_server)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{store_db}" WITH (FORCE)')
        finally:
            await admin.close()
        with redis.Redis(host=redis_server.host, port=redis_server.port) as client:
            client.execute_command("ACL", "DELUSER", QUEUE_USER)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def stack(request: pytest.FixtureRequest, e2e_stack: Stack) -> Iterator[Stack]:
    """The session's stack for this test; its processes' logs are printed if the test fails."""
    yield e2e_stack
    if request.node.stash.get(_FAILED, False):
        print(e2e_stack.logs())


@pytest.fixture
async def bound_namespace(kube_admin: Any, kube_namespace: str) -> str:
    """The test's namespace, where the remediator's ServiceAccount holds deploy/'s permissions
    through a RoleBinding, as deploy/base/rbac.yaml binds its example namespace."""
    binding: Any = {
        "metadata": {"name": "alert-remediator-actions"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": CLUSTER_ROLE,
        },
        "subjects": [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": SA_NAMESPACE}],
    }
    await k8s.RbacAuthorizationV1Api(kube_admin).create_namespaced_role_binding(
        kube_namespace, binding
    )
    return kube_namespace
