"""Benchmarks (``make bench``)."""

import resource


def raise_fd_limit() -> None:
    """Thousands of sockets per process: the soft open-files limit up to the hard one."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
