"""The REST Lambda's cold start, before and after a change, measured in the same run.

``python -m bench.api_cold_start --before <git ref> [--runs 7]`` exports ``<git ref>`` to a
temporary directory and times, alternately for that tree and the working tree, a fresh
interpreter that imports ``functions.api.handler`` (what every new Lambda instance pays
before its first request) and then serves one ``GET /api/v1/models`` through it. Medians
of ``--runs`` runs each; local model, dev auth (``AUTH_DEV_ALLOW_PUBLIC=1``: this is no
server), no AWS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PROBE = """
import json, sys, time
t0 = time.perf_counter()
import functions.api.handler as h
t1 = time.perf_counter()
sys.path.insert(0, {root!r})
from tests.support.lambda_events import FakeContext, http_api_event
from core.auth.dev import DevTokens
from core.settings import DEV_SECRET_DEFAULT
token = DevTokens(DEV_SECRET_DEFAULT, 60).mint("bench")
t2 = time.perf_counter()
status = h.handler(http_api_event("GET", "/api/v1/models", token=token), FakeContext())["statusCode"]
t3 = time.perf_counter()
print(json.dumps({{"import_ms": (t1 - t0) * 1000, "first_request_ms": (t3 - t2) * 1000,
                  "status": status, "openai_loaded": "openai" in sys.modules}}))
"""


def _export(ref: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", ref], check=True, capture_output=True
    ).stdout
    with tempfile.TemporaryFile() as tmp:
        tmp.write(archive)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp) as tar:
            tar.extractall(into, filter="data")


def _probe(tree: Path) -> dict[str, float]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AUTH_", "OPENAI_"))},
        "AUTH_MODE": "dev",
        "AUTH_DEV_ALLOW_PUBLIC": "1",
        "LLM_PROVIDER": "local",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(tree),
        "PYTHONDONTWRITEBYTECODE": "",
    }
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(root=str(ROOT))],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.api_cold_start", description=__doc__)
    parser.add_argument("--before", required=True, help="git ref of the 'before' tree")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        before_tree = Path(tmp)
        _export(args.before, before_tree)
        trees = {"before": before_tree, "after": ROOT}
        for tree in trees.values():  # warm the bytecode caches of both trees
            _probe(tree)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(args.runs):
            for name, tree in trees.items():
                runs[name].append(_probe(tree))
    print(f"{'':8} {'import ms':>10} {'first request ms':>17} {'import + first':>15}")
    medians = {}
    for name, results in runs.items():
        imp = statistics.median(r["import_ms"] for r in results)
        first = statistics.median(r["first_request_ms"] for r in results)
        both = statistics.median(r["import_ms"] + r["first_request_ms"] for r in results)
        medians[name] = (imp, both)
        print(f"{name:8} {imp:10.0f} {first:17.0f} {both:15.0f}")
    ratio = medians["after"][0] / medians["before"][0]
    print(
        f"import after/before: {ratio:.2f}; import + first request after/before:"
        f" {medians['after'][1] / medians['before'][1]:.2f}"
    )


if __name__ == "__main__":
    main()
