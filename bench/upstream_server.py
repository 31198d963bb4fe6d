"""Run the scripted OpenAI-compatible upstream as its own process (for benchmarks)."""

from __future__ import annotations

import argparse

import uvicorn

from bench import raise_fd_limit
from devstack.upstream import ScriptedUpstream


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--ttft", type=float, default=0.05)
    parser.add_argument("--tokens", type=int, default=20, help="tokens when max_tokens is unset")
    args = parser.parse_args()
    raise_fd_limit()
    app = ScriptedUpstream(
        ttft_s=args.ttft, interval_s=args.interval, stamp=True, default_tokens=args.tokens
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        backlog=8192,
        timeout_keep_alive=120,
    )


if __name__ == "__main__":
    main()
