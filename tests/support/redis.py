"""A real ``redis-server`` (Debian package) on a free loopback port, for tests.

No persistence (``--save ''``, no AOF): every start is an empty server. ``stop()`` and
``start()`` again reuse the same port, which is what a Redis restart looks like to clients.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.local_aws import free_port

ROOT = Path(__file__).resolve().parents[2]


def redis_server_path() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )


class RedisServer:
    def __init__(self, port: int | None = None) -> None:
        binary = redis_server_path()
        if binary is None:
            raise RuntimeError("redis-server is not installed (make system-deps installs it)")
        self.binary = binary
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = ROOT / "test-artifacts" / f"redis-{self.port}.log"

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        self.log_path.parent.mkdir(exist_ok=True)
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
