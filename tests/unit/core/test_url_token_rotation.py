"""The URL-token key read where it can rotate (moto's Secrets Manager, in process): a
stream node and a freshly restored Lambda each hold their own cache; a rotation
(put-secret-value) reaches both without a restart or a new version, tokens minted before
it keep working until they expire, and a forged token cannot make a node hammer Secrets
Manager."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from core.auth.keys import SecretsManagerKeys, boto3_reader
from core.auth.url_tokens import UrlTokens
from core.errors import Unauthorized
from core.settings import Settings, resolve_secrets

REGION = "us-east-1"


def key() -> str:
    return secrets.token_urlsafe(48)


@pytest.fixture
def secret_arn() -> Iterator[str]:
    with mock_aws():
        client = boto3.client("secretsmanager", region_name=REGION)
        yield client.create_secret(Name="rtai-test/url-token-secret", SecretString=key())["ARN"]


def rotate(arn: str) -> None:
    boto3.client("secretsmanager", region_name=REGION).put_secret_value(
        SecretId=arn, SecretString=key()
    )


class CountingReader:
    def __init__(self) -> None:
        self.read = boto3_reader(REGION)
        self.calls = 0

    def __call__(self, arn: str, stage: str) -> str | None:
        self.calls += 1
        return self.read(arn, stage)


def test_settings_read_no_key_at_start_up(secret_arn: str) -> None:
    settings = resolve_secrets(Settings(url_token_secret_arn=secret_arn, aws_region=REGION))
    assert settings.url_token_secret is None  # not in the snapshot of an initialised Lambda
    assert len(settings.url_token_key) >= 32  # read when first needed


def test_a_rotation_reaches_a_running_node_without_a_restart(secret_arn: str) -> None:
    node = UrlTokens(SecretsManagerKeys(secret_arn, boto3_reader(REGION)), 900)
    before = node.mint("alice", "stream:s1:read")  # the node has cached the key

    rotate(secret_arn)
    # a Lambda restored after the rotation signs with the new key...
    fresh = UrlTokens(SecretsManagerKeys(secret_arn, boto3_reader(REGION)), 900)
    after = fresh.mint("alice", "stream:s2:read")
    # ...and the node, whose cache predates it, still accepts it (re-reads once)
    assert node.verify_stream_read(after, "s2").sub == "alice"
    # tokens minted before the rotation stay valid (AWSPREVIOUS) on every process
    assert node.verify_stream_read(before, "s1").sub == "alice"
    assert fresh.verify_stream_read(before, "s1").sub == "alice"
    # and the node now signs with the new key too
    assert fresh.verify_stream_read(node.mint("bob", "stream:s3:read"), "s3").sub == "bob"


def test_two_rotations_retire_the_oldest_key(secret_arn: str) -> None:
    first = UrlTokens(SecretsManagerKeys(secret_arn, boto3_reader(REGION)), 900)
    old = first.mint("alice", "stream:s1:read")
    rotate(secret_arn)
    rotate(secret_arn)
    later = UrlTokens(SecretsManagerKeys(secret_arn, boto3_reader(REGION)), 900)
    with pytest.raises(Unauthorized):
        later.verify_stream_read(old, "s1")


def test_forged_tokens_re_read_the_secret_at_most_once_per_window(secret_arn: str) -> None:
    reader = CountingReader()
    ring = SecretsManagerKeys(secret_arn, reader)
    tokens = UrlTokens(ring, 900)
    tokens.mint("alice", "stream:s1:read")
    reads_after_first_use = reader.calls  # AWSCURRENT + AWSPREVIOUS
    forger = UrlTokens(key(), 900)
    for _ in range(20):
        with pytest.raises(Unauthorized):
            tokens.verify_stream_read(forger.mint("mallory", "stream:s1:read"), "s1")
    assert reader.calls <= 2 * reads_after_first_use  # one re-read, not twenty


def test_forget_reads_the_keys_anew_after_a_snapshot_restore(secret_arn: str) -> None:
    ring = SecretsManagerKeys(secret_arn, boto3_reader(REGION))
    before = ring.signing_key()
    rotate(secret_arn)
    assert ring.signing_key() == before  # cached (within its max age)
    ring.forget()
    assert ring.signing_key() != before
