"""The SDK client subclass joins each path with the base URL once, and again when it changes."""

from __future__ import annotations

from core.providers.openai_client import MAX_CACHED_PATHS, OpenAIClient


def test_urls_are_joined_as_the_sdk_joins_them_and_kept() -> None:
    client = OpenAIClient(api_key="k", base_url="http://upstream:8000/v1")
    first = client._prepare_url("/chat/completions")
    assert str(first) == "http://upstream:8000/v1/chat/completions"
    assert client._prepare_url("/chat/completions") is first
    assert str(client._prepare_url("https://other.example/x")) == "https://other.example/x"


def test_a_new_base_url_is_honoured() -> None:
    client = OpenAIClient(api_key="k", base_url="http://one:1/v1")
    assert str(client._prepare_url("/models")) == "http://one:1/v1/models"
    client.base_url = "http://two:2/api/"
    assert str(client._prepare_url("/models")) == "http://two:2/api/models"
    copy = client.with_options(base_url="http://three:3/")
    assert str(copy._prepare_url("/models")) == "http://three:3/models"
    assert str(client._prepare_url("/models")) == "http://two:2/api/models"


def test_paths_with_ids_do_not_grow_the_cache_without_bound() -> None:
    client = OpenAIClient(api_key="k", base_url="http://up/v1")
    for i in range(MAX_CACHED_PATHS * 3):
        assert str(client._prepare_url(f"/files/file-{i}")) == f"http://up/v1/files/file-{i}"
    assert len(client._urls) == MAX_CACHED_PATHS
