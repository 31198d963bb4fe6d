"""Run the npm clients of tests/node (the official ``openai`` SDK, the AI SDK's ``ai``) under
the pinned Node of the root package.json (``make node-clients`` installs both)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NODE = REPO / "node_modules" / ".bin" / "node"
CLIENTS = REPO / "tests" / "node"


def require_node_clients() -> None:
    """Fail (never skip) when the pinned Node or the clients are missing: CI installs them."""
    if not NODE.exists() or not (CLIENTS / "node_modules" / "openai").exists():
        pytest.fail("npm clients missing: run `make node-clients`")


def run_node(
    script: str | Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> Any:
    """Run a script under tests/node (its ``import``s resolve there) and return the JSON it
    prints on its last stdout line. A non-zero exit fails the test with its stderr."""
    require_node_clients()
    path = Path(script)
    if not path.is_absolute():
        path = CLIENTS / path
    done = subprocess.run(
        [str(NODE), str(path), *args],
        cwd=CLIENTS,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"node {path.name} exited {done.returncode}:\n{done.stderr[-4000:]}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if not lines:
        pytest.fail(f"node {path.name} printed nothing; stderr:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1])
