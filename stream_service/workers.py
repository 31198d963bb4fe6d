"""``WORKERS`` > 1: one stream-service process per vCPU, behind one port.

Python runs one thread of bytecode at a time, so a node with two vCPUs needs two processes
to use them. The supervisor forks ``WORKERS`` copies of the node after the imports (the
modules' memory is shared copy-on-write); each worker binds the same port with
``SO_REUSEPORT`` (the kernel spreads new connections evenly over the workers) and is a full
node of the cluster with an id of its own (``<NODE_ID>-w<i>``): its own engine, slots,
heartbeats and leases, its own metrics port (``METRICS_PORT + i``). A stream produced by one
worker is read from another through the store, as across tasks, so the store must be
shared (``STREAM_STORE=dynamodb``).

The supervisor forwards SIGTERM and SIGINT to every worker (each drains as a single node
does) and waits for them; a worker that dies otherwise is started again. A worker ends with
the supervisor (``PR_SET_PDEATHSIG``): a killed supervisor leaves no worker serving alone.
uvicorn's own multiprocess supervisor runs its plain ``Server`` in each worker, without this
service's drain, so the service keeps this small one.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("rtai.stream")

_PR_SET_PDEATHSIG = 1
# A worker that dies this soon after its start failed to start (bad config, port taken):
# starting it again would only fail again.
_START_FAILURE_S = 5.0


def vcpu_count() -> int:
    """The vCPUs this process may use: its CPU affinity, bounded by a cgroup v2 CPU quota
    (``cpu.max``, what ECS sets from a task's ``cpu``), at least 1."""
    count = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()  # noqa: SIM115
        if quota != "max":
            count = min(count, max(1, -(-int(quota) // int(period))))
    return max(1, count)


def reuseport_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket on ``host:port`` that other workers may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def die_with_parent() -> None:
    """Linux: SIGKILL this process when the process that forked it ends."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class Supervisor:
    """Forks ``count`` workers running ``serve(index)`` and keeps them running until told
    to stop. ``serve`` runs in the child and never returns normally (it exits)."""

    count: int
    serve: Callable[[int], None]
    pids: dict[int, int] = field(default_factory=dict)  # pid -> worker index
    started: dict[int, float] = field(default_factory=dict)  # worker index -> start time
    stopping: bool = False
    failed: bool = False

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._forward)
        for index in range(self.count):
            self._start(index)
        log.warning("stream service: %d workers (pids %s)", self.count, sorted(self.pids))
        while self.pids:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            except InterruptedError:  # pragma: no cover - PEP 475 retries wait()
                continue
            index = self.pids.pop(pid, -1)
            if index < 0:
                continue
            code = os.waitstatus_to_exitcode(status)
            if self.stopping or self.failed:
                continue
            if time.monotonic() - self.started[index] < _START_FAILURE_S and code != -9:
                log.error("worker %d failed to start (exit %d): stopping", index, code)
                self.failed = True
                self._signal_all(signal.SIGTERM)
                continue
            log.error("worker %d (pid %d) ended (exit %d): starting it again", index, pid, code)
            self._start(index)
        return 1 if self.failed else 0

    def _start(self, index: int) -> None:
        pid = os.fork()
        if pid == 0:  # the worker
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            die_with_parent()
            try:
                self.serve(index)
            except SystemExit as exc:
                os._exit(exc.code if isinstance(exc.code, int) else 1)
            except BaseException:
                log.exception("worker %d crashed", index)
                os._exit(1)
            os._exit(0)
        self.pids[pid] = index
        self.started[index] = time.monotonic()

    def _forward(self, sig: int, _frame: object) -> None:
        self.stopping = True
        self._signal_all(sig)

    def _signal_all(self, sig: int) -> None:
        for pid in list(self.pids):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)


def worker_node_id(base: str, index: int) -> str:
    return f"{base}-w{index}"
