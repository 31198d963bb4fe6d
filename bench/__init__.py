"""Benchmarks (``make bench``)."""

import resource


def raise_fd_limit(want: int = 65536) -> None:
    """Tens of thousands of sockets per process (10,000 idle streams are 20,000 sockets in
    the node): the open-files limit up to ``want`` where this user may raise the hard limit
    (root), else the soft limit up to the hard one. Children inherit it."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return
        except (ValueError, OSError):
            pass
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
