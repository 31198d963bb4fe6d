"""Secrets by ARN: the URL-token key at start-up, the model key at its first use only
(a SnapStart snapshot of the initialised function must not hold the deploy-time
placeholder of a key set afterwards)."""

from __future__ import annotations

import pytest

import core.settings as settings_module
from core.settings import Settings, resolve_secrets


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []

    def read(arn: str) -> str:
        calls.append(arn)
        return f"value-of-{arn}-" + "x" * 32

    monkeypatch.setattr(settings_module, "_read_secret", read)
    return calls


def test_start_up_reads_the_url_token_key_but_not_the_model_key(reads: list[str]) -> None:
    settings = resolve_secrets(
        Settings(openai_api_key_secret_arn="arn:model", url_token_secret_arn="arn:url")
    )
    assert reads == ["arn:url"]
    assert settings.url_token_key.startswith("value-of-arn:url")
    assert settings.openai_key() == "value-of-arn:model-" + "x" * 32
    assert reads == ["arn:url", "arn:model"]


def test_a_key_given_directly_is_used_as_is(reads: list[str]) -> None:
    assert Settings(openai_api_key="sk-1").openai_key() == "sk-1"
    assert Settings().openai_key() is None
    assert reads == []
