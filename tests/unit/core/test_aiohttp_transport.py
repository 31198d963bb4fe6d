"""The aiohttp transport's edges: proxies from the environment, and which bodies take the
short path (uncompressed ones served by aiohttp) versus httpx2's decoding path."""

from __future__ import annotations

import gzip

import httpx2
import pytest

from core.providers.aiohttp_transport import detach_body
from core.providers.proxies import env_proxy


@pytest.fixture(autouse=True)
def _fresh_proxy_cache() -> None:
    env_proxy.cache_clear()


def test_proxy_comes_from_the_environment_unless_no_proxy_exempts_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,.svc.local")
    assert env_proxy("https", "api.openai.com") == "http://proxy.internal:3128"
    assert env_proxy("http", "api.openai.com") is None  # no HTTP_PROXY set
    assert env_proxy("https", "127.0.0.1") is None
    assert env_proxy("https", "vllm.svc.local") is None


async def test_a_body_not_served_by_aiohttp_is_not_detached_and_httpx2_decodes_it() -> None:
    payload = b"data: {}\n\n" * 3
    response = httpx2.Response(
        200, headers={"content-encoding": "gzip"}, content=gzip.compress(payload)
    )
    assert detach_body(response) is None
    chunks = [chunk async for chunk in response.aiter_bytes()]
    assert b"".join(chunks) == payload
