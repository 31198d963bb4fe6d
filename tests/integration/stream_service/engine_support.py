"""Helpers for the engine's real-parts tests: Prometheus counters of a node, waiting."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import ROOT, ProcessServer, wait_http


def metric(node: ProcessServer, name: str, **labels: str) -> float:
    """The value of one sample of a node's /stream/metrics (0 when absent)."""
    text = httpx.get(f"{node.url}/stream/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def store_writes(node: ProcessServer, op: str) -> float:
    return metric(node, "rtai_stream_store_writes_total", op=op)


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class PatientServer(ProcessServer):
    """A node that may take a while to come up on a busy machine, and that is killed if
    it never does (no process left behind)."""

    def start(self, timeout: float = 90.0) -> PatientServer:  # type: ignore[override]
        self.log_path.parent.mkdir(exist_ok=True)
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http(self.url + self.health, timeout=timeout)
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise
        return self


def patient_nodes(node_env: dict[str, str]) -> Iterator[Callable[..., ProcessServer]]:
    """The body of a ``start_node`` fixture built on :class:`PatientServer`."""
    started: list[ProcessServer] = []

    def start(**overrides: str) -> ProcessServer:
        node = PatientServer("stream_service", {**node_env, **overrides}, health="/stream/healthz")
        started.append(node)
        return node.start()

    yield start
    for node in started:
        node.stop()
