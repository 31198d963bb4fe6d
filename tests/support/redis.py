"""A real ``redis-server`` (Debian package) on a free loopback port, for tests; and a
Redis Cluster of three such servers in cluster mode (three masters, no replicas), the
protocol ElastiCache Serverless speaks.

No persistence (``--save ''``, no AOF): every start is an empty server. ``stop()`` and
``start()`` again reuse the same port, which is what a Redis restart looks like to clients.
A cluster node keeps its ``nodes.conf`` (its id and slots) across a restart, so it comes
back as the same master of the same slots, as a restarted shard does.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

from devstack.local_aws import free_port

ROOT = Path(__file__).resolve().parents[2]


def redis_server_path() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


class RedisServer:
    def __init__(
        self,
        port: int | None = None,
        *,
        extra_args: Sequence[str] = (),
        workdir: Path | None = None,
    ) -> None:
        binary = redis_server_path()
        if binary is None:
            raise RuntimeError("redis-server is not installed (make system-deps installs it)")
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_args = list(extra_args)
        self.workdir = workdir or ROOT / "test-artifacts"
        self.log_path = self.workdir / f"redis-{self.port}.log"

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--protected-mode", "yes",
                "--dir", str(self.log_path.parent),
                "--dbfilename", f"redis-{self.port}.rdb",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server on {self.port} did not come up")
            time.sleep(0.02)
        return self

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop the server (SIGKILL by default: the clients see the connection drop)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        if down_s:
            time.sleep(down_s)
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def redis_server_fixture() -> Iterator[RedisServer]:
    """Body of a fixture: ``redis = pytest.fixture(scope=...)(redis_server_fixture)``."""
    if redis_server_path() is None:
        pytest.fail("redis-server is not installed: run `make system-deps`")
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


CLUSTER_SLOTS = 16384


class RedisClusterServers:
    """Three ``redis-server`` masters in cluster mode on free loopback ports, slots split
    evenly (``CLUSTER ADDSLOTSRANGE`` + ``CLUSTER MEET``, what ``redis-cli --cluster
    create`` does). ``url`` points at the first master: a cluster client discovers the
    rest from it, as it does from ElastiCache Serverless's single endpoint."""

    def __init__(self, masters: int = 3, node_timeout_ms: int = 2000) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="redis-cluster-", dir=_artifacts()))
        self.nodes: list[RedisServer] = []
        self.bus_ports: dict[int, int] = {}  # a node's port -> its cluster bus port
        for _ in range(masters):
            port, bus_port = free_port(), free_port()
            self.bus_ports[port] = bus_port
            self.nodes.append(
                RedisServer(
                    port,
                    workdir=self.workdir,
                    extra_args=[
                        "--cluster-enabled", "yes",
                        "--cluster-port", str(bus_port),
                        "--cluster-config-file", str(self.workdir / f"nodes-{port}.conf"),
                        "--cluster-node-timeout", str(node_timeout_ms),
                        # one master down must not stop the others serving their slots
                        "--cluster-require-full-coverage", "no",
                    ],
                )
            )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.nodes[0].port}"

    def start(self, timeout: float = 30.0) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        per = CLUSTER_SLOTS // len(self.nodes)
        for index, node in enumerate(self.nodes):
            last = CLUSTER_SLOTS - 1 if index == len(self.nodes) - 1 else (index + 1) * per - 1
            with node.client() as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", index * per, last)
        with self.nodes[0].client() as first:
            for node in self.nodes[1:]:
                first.execute_command(
                    "CLUSTER", "MEET", "127.0.0.1", node.port, self.bus_ports[node.port]
                )
        self.wait_ok(timeout)
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Until every master says the cluster is ``ok`` and knows every other master."""
        deadline = time.monotonic() + timeout
        while not all(self._ok(node) for node in self.nodes):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the redis cluster did not form; see {self.workdir}")
            time.sleep(0.05)

    def _ok(self, node: RedisServer) -> bool:
        try:
            with node.client() as c:
                info = c.execute_command("CLUSTER", "INFO").decode()
        except redis.RedisError:
            return False
        fields = dict(line.split(":", 1) for line in info.split() if ":" in line)
        formed = fields.get("cluster_known_nodes") == str(len(self.nodes))
        return formed and fields.get("cluster_state") == "ok"

    def node_of(self, key: str) -> RedisServer:
        """The master that owns ``key``'s slot now (as the cluster's slot map says)."""
        for asked in self.nodes:
            if not asked.running:
                continue
            with asked.client() as c:
                slot = int(c.execute_command("CLUSTER", "KEYSLOT", key))
                for first, last, owner, *_ in c.execute_command("CLUSTER", "SLOTS"):
                    if first <= slot <= last:
                        port = int(owner[1])
                        return next(node for node in self.nodes if node.port == port)
        raise LookupError(f"no master owns the slot of {key}")

    def restart(self, node: RedisServer, down_s: float = 0.0) -> None:
        """SIGKILL one master and start it again on its port (same id, same slots)."""
        node.restart(down_s)
        self.wait_ok()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisClusterServers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _artifacts() -> Path:
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


def redis_cluster_fixture() -> Iterator[RedisClusterServers]:
    """Body of a fixture: ``cluster = pytest.fixture(scope=...)(redis_cluster_fixture)``."""
    if redis_server_path() is None:
        pytest.fail("redis-server is not installed: run `make system-deps`")
    cluster = RedisClusterServers().start()
    try:
        yield cluster
    finally:
        cluster.stop()
