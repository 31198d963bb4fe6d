"""Real servers on 127.0.0.1 for tests: uvicorn in a thread, or a service in a subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from devstack.local_aws import free_port

ROOT = Path(__file__).resolve().parents[2]


def wait_http(url: str, timeout: float = 60.0) -> None:
    """Until ``url`` answers below 500. A process starts in 1-3 s on an idle machine; the
    bound is generous for a loaded one (start-up fails fast anyway: see ProcessServer)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} did not come up: {last}")


class ThreadServer:
    """An ASGI app served by uvicorn on its own thread and event loop."""

    def __init__(self, app: Any, port: int | None = None, **config: Any) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cfg = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="auto", **config
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class ProcessServer:
    """``python -m MODULE --host 127.0.0.1 --port P`` in a subprocess, with its own env."""

    def __init__(
        self, module: str, env: dict[str, str], port: int | None = None, health: str = "/"
    ) -> None:
        self.module = module
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.health = health
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = ROOT / "test-artifacts" / f"{module}-{self.port}.log"

    def start(self) -> ProcessServer:
        self.launch()
        return self.ready()

    def launch(self) -> ProcessServer:
        """Start the process without waiting for it (see :func:`start_together`)."""
        self.log_path.parent.mkdir(exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    self.module,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                ],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def ready(self, timeout: float = 90.0) -> ProcessServer:
        """Wait until the launched process answers its health URL (a loaded machine may take
        long); one that never does is killed, so no process is left behind."""
        assert self.proc is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while True:
            try:
                wait_http(self.url + self.health, timeout=1.0)
                return self
            except TimeoutError:
                if self.proc.poll() is not None:  # it died: say why, at once
                    raise RuntimeError(
                        f"{self.module} exited {self.proc.returncode}: see {self.log_path}"
                    ) from None
                if time.monotonic() > deadline:
                    self.proc.kill()
                    self.proc.wait()
                    raise

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ProcessServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_together(*servers: ProcessServer, timeout: float = 90.0) -> tuple[ProcessServer, ...]:
    """Launch every server, then wait for each: their start-ups (mostly imports) overlap."""
    for server in servers:
        server.launch()
    return tuple(server.ready(timeout) for server in servers)


@contextlib.contextmanager
def env_vars(**values: str) -> Iterator[None]:
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
