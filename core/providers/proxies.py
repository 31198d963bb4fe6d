"""The proxy the SDK's own client would use for an upstream host, from the environment."""

from __future__ import annotations

import functools
import urllib.request


@functools.lru_cache(maxsize=64)
def env_proxy(scheme: str, host: str) -> str | None:
    """``HTTPS_PROXY``/``HTTP_PROXY`` for this host unless ``NO_PROXY`` exempts it (read
    once per host: the transports look it up on every request)."""
    if urllib.request.proxy_bypass(host):
        return None
    return urllib.request.getproxies().get(scheme)
