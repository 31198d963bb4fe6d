"""Stream-service nodes a test module starts (``python -m stream_service``), stopped at its
end. Nodes wanted together start together: each start is mostly imports, and two overlap."""

from __future__ import annotations

import signal
from collections.abc import Iterator

from tests.support.servers import ProcessServer, start_together


class Nodes:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.started: list[ProcessServer] = []

    def _new(self, overrides: dict[str, str]) -> ProcessServer:
        node = ProcessServer("stream_service", {**self.env, **overrides}, health="/stream/healthz")
        self.started.append(node)  # stopped at the end even if it never comes up
        return node

    def start(self, **overrides: str) -> ProcessServer:
        return self._new(overrides).start()

    def pair(self, first: str, second: str, **common: str) -> tuple[ProcessServer, ProcessServer]:
        """Two nodes (NODE_ID ``first`` and ``second``, the same settings), started at once."""
        a = self._new({**common, "NODE_ID": first})
        b = self._new({**common, "NODE_ID": second})
        start_together(a, b)
        return a, b

    def kill(self, node: ProcessServer) -> None:
        node.signal(signal.SIGKILL)
        node.wait(10)

    def stop_all(self) -> None:
        for node in self.started:
            node.stop()


def start_nodes(env: dict[str, str]) -> Iterator[Nodes]:
    """Body of a fixture: ``yield from start_nodes(env)``."""
    nodes = Nodes(env)
    try:
        yield nodes
    finally:
        nodes.stop_all()
