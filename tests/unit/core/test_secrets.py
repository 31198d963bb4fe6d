"""Secrets by ARN: neither is read at start-up (a SnapStart snapshot of the initialised
function must hold no secret: not the placeholder of a model key set afterwards, not a
URL-token key that may rotate); the model key at its first use, the URL-token key when
first needed (tests/unit/core/test_url_token_rotation.py)."""

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


def test_start_up_reads_no_secret(reads: list[str]) -> None:
    settings = resolve_secrets(
        Settings(openai_api_key_secret_arn="arn:model", url_token_secret_arn="arn:url")
    )
    assert reads == []
    assert settings.url_token_secret is None  # nothing baked into the settings
    assert settings.openai_key() == "value-of-arn:model-" + "x" * 32
    assert reads == ["arn:model"]


def test_a_key_given_directly_is_used_as_is(reads: list[str]) -> None:
    assert Settings(openai_api_key="sk-1").openai_key() == "sk-1"
    assert Settings().openai_key() is None
    assert reads == []
