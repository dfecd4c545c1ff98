"""DatabaseConnectionsHigh end to end (rules/database-connections.yaml,
docs/playbooks/DatabaseConnectionsHigh.md).

Real sessions are open on the real PostgreSQL: the application role's sessions idle in a
transaction (to be ended), and sessions that must be spared (the same role idle outside a
transaction or running a statement, another role idle in a transaction, a superuser idle in a
transaction). The exporter's and the pools' gauges go over the thresholds: Prometheus fires the
shipped alert, Alertmanager routes it, and two rules act. On the database, as the least-privilege
role: exactly the application's idle transactions are ended. On the Deployment: on-call is told.
The gauges fall: both runs are verified. The alert comes back within the hour: DB_POOL_SIZE=5
on the `app` container waits for an engineer, is approved through the API and set; the gauges
fall, and that run is verified too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from tests.e2e.conftest import CURRENT_ALERTMANAGER, Stack
from tests.support.kube_fixtures import MakeDeployment
from tests.support.postgres import login_role
from tests.support.runbooks import approve, deployment, own_pods, run_of, run_steps, until
from tests.support.sessions import Sessions

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.kube,
    pytest.mark.postgres,
    pytest.mark.timeout(120),
    CURRENT_ALERTMANAGER,
]

END_IDLE = "end-idle-transactions-on-database-connections"
POOL = "shrink-pool-on-database-connections"
DATABASE_TARGET = "PostgresDatabase/shop"
IDLE_FOR_S = 2.0  # the re-timed idle_for (tests/support/remediator.py RULE_TIMES)


class DatabaseSessions(Sessions):
    """Real sessions on the application database, closed at the end."""

    def __init__(self, stack: Stack) -> None:
        super().__init__()
        self.db = stack.database

    async def open(self, url: str, *, transaction: bool) -> int:
        conn = await self.idle(url, transaction=transaction, application="orders-api")
        return int(conn.get_server_pid())

    async def active(self, url: str) -> int:
        conn = await self.connect(url)
        self.sleep(conn, 120)
        return int(conn.get_server_pid())

    async def states(self, pids: list[int]) -> dict[int, tuple[str, float]]:
        """pid -> (state, seconds in it) of those still there."""
        admin = await asyncpg.connect(self.db.admin_url)
        try:
            rows = await admin.fetch(
                "SELECT pid, state, extract(epoch FROM now() - state_change) AS age "
                "FROM pg_stat_activity WHERE pid = ANY($1::int[])",
                pids,
            )
        finally:
            await admin.close()
        return {r["pid"]: (r["state"], float(r["age"])) for r in rows}


@pytest.fixture
async def other_role(stack: Stack) -> AsyncIterator[str]:
    """A login role the rule does not list."""
    async with login_role(stack.database.admin_url, "e2e_other_") as role:
        yield role


def _as(url: str, role: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{role}@{rest.rpartition('@')[2]}"


async def test_database_connections_end_idle_transactions_then_shrink_the_pool_when_it_recurs(
    stack: Stack,
    kube_admin: Any,
    bound_namespace: str,
    make_deployment: MakeDeployment,
    other_role: str,
) -> None:
    namespace = bound_namespace
    await make_deployment("orders", replicas=2)
    target = f"Deployment/{namespace}/orders"
    pods = own_pods(stack.metrics, namespace, "orders", 2)
    server = {"namespace": namespace, "server": "postgres:5432", "database": "shop"}
    activity = {"namespace": namespace, "datname": stack.database.name}

    def connections(used_per_pod: int, server_total: int) -> None:
        stack.metrics.set("pg_settings_max_connections", server, 100)
        stack.metrics.set("pg_stat_activity_count", {**activity, "state": "idle"}, server_total)
        for pod in pods:
            labels = {"namespace": namespace, "pod": pod, "pool_name": "main", "state": "used"}
            stack.metrics.set("db_client_connections_usage", labels, used_per_pod)

    sessions = DatabaseSessions(stack)
    try:
        db = stack.database
        doomed = [await sessions.open(db.app_url, transaction=True) for _ in range(3)]
        spared = [
            await sessions.open(db.app_url, transaction=False),  # idle, not in a transaction
            await sessions.active(db.app_url),  # running a statement
            await sessions.open(_as(db.app_url, other_role), transaction=True),  # not listed
            await sessions.open(db.admin_url, transaction=True),  # a superuser
        ]

        async def idle_long_enough() -> bool:
            states = await sessions.states(doomed)
            return all(age > IDLE_FOR_S for _, age in states.values())

        await until("the transactions to be idle past idle_for", idle_long_enough)
        connections(used_per_pod=30, server_total=90)  # 60 of 100 held, the server at 90 %

        ended = await run_of(
            stack.api,
            END_IDLE,
            DATABASE_TARGET,
            "verifying",
            what="the idle transactions ended",
        )
        (step,) = ended["steps"]
        assert (step["action"], step["outcome"]) == ("postgres.terminate_idle", "ok"), step
        assert sorted(step["after"]["terminated"]) == sorted(doomed)
        states = await sessions.states(doomed + spared)
        assert set(states) == set(spared), "exactly the app's idle transactions were ended"
        told = await run_of(stack.api, POOL, target, "verifying", what="on-call told")
        assert run_steps(told) == [("notify", "ok")]
        notice = await stack.sink.wait_for(
            "from the notify step", lambda b: b.get("run_id") == told["id"]
        )
        assert f"{namespace}/orders" in notice["title"]

        connections(used_per_pod=10, server_total=40)
        for rule, on in ((END_IDLE, DATABASE_TARGET), (POOL, target)):
            await run_of(stack.api, rule, on, "verified", what=f"{rule} verified")

        # Within the hour it fires again: the pool is too large for the database.
        connections(used_per_pod=30, server_total=90)
        second = await run_of(
            stack.api,
            POOL,
            target,
            "awaiting_approval",
            what="DB_POOL_SIZE to wait for an approval",
            index=1,
        )
        assert run_steps(second) == [("notify", "ok"), ("kubernetes.set_env", "awaiting_approval")]
        await approve(stack.api, stack.sink, second["id"], "kubernetes.set_env")
        await run_of(
            stack.api,
            POOL,
            target,
            "verifying",
            what="DB_POOL_SIZE set",
            index=1,
        )
        dep = await deployment(kube_admin, namespace, "orders")
        (app,) = dep.spec.template.spec.containers
        assert [(e.name, e.value) for e in app.env or []] == [("DB_POOL_SIZE", "5")]

        connections(used_per_pod=10, server_total=40)
        await run_of(
            stack.api,
            POOL,
            target,
            "verified",
            what="the pool run verified",
            index=1,
        )
        # The superuser's and the other role's sessions were never touched, whatever ran.
        assert set(await sessions.states(spared)) == set(spared)
    finally:
        await sessions.close()
        for name in ("pg_settings_max_connections", "pg_stat_activity_count"):
            stack.metrics.remove(name)
        stack.metrics.remove("db_client_connections_usage")
