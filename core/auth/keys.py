"""The URL-token key (it signs URL tokens, WebSocket tickets and realtime client secrets),
read where it can rotate.

In AWS the key is a Secrets Manager secret (``URL_TOKEN_SECRET_ARN``), read by both
runtimes *when first needed*, never at import: a Lambda SnapStart snapshot taken after the
import must not hold it (restored instances would sign with it after a rotation), and
neither may a stream task's environment (tasks started before a rotation would reject
what the others sign). :class:`SecretsManagerKeys` keeps the value ``max_age_s`` and signs
with ``AWSCURRENT``; it verifies with ``AWSCURRENT`` and ``AWSPREVIOUS``, so tokens
minted just before a rotation stay valid until they expire, and a token signed with a
key newer than its cache makes it read the secret again at once (at most every
``REFRESH_EVERY_S``) instead of failing until the cache ages out.

Rotate with ``aws secretsmanager put-secret-value`` (the old value becomes AWSPREVIOUS);
no restart and no new Lambda version is needed (docs/deploy.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

MIN_KEY_BYTES = 32
CURRENT = "AWSCURRENT"
PREVIOUS = "AWSPREVIOUS"
# A rotation reaches every process within this long (the cache's lifetime)...
MAX_AGE_S = 300.0
# ...or at once when a token fails to verify, at most this often (a flood of forged tokens
# must not turn into a flood of Secrets Manager calls).
REFRESH_EVERY_S = 30.0


class KeyTooShort(ValueError):
    pass


def check_key(value: str) -> str:
    if len(value.encode()) < MIN_KEY_BYTES:
        raise KeyTooShort(
            f"URL_TOKEN_SECRET must be at least {MIN_KEY_BYTES} bytes (HS256 key; a short one"
            " can be brute-forced offline from any URL token)"
        )
    return value


class KeyRing(Protocol):
    def signing_key(self) -> str:
        """The key new tokens are signed with."""
        ...

    def verification_keys(self) -> list[str]:
        """Every key a valid token may be signed with, newest first."""
        ...

    def refresh(self) -> bool:
        """Read the keys again now if allowed (a token failed to verify); True if read."""
        ...


class StaticKeys:
    """One key given directly (``URL_TOKEN_SECRET``, dev auth): nothing to rotate."""

    def __init__(self, key: str) -> None:
        self._key = key

    def signing_key(self) -> str:
        return self._key

    def verification_keys(self) -> list[str]:
        return [self._key]

    def refresh(self) -> bool:
        return False


Reader = Callable[[str, str], str | None]  # (arn, version stage) -> value, None if absent


class SecretsManagerKeys:
    def __init__(
        self,
        arn: str,
        read: Reader,
        *,
        max_age_s: float = MAX_AGE_S,
        refresh_every_s: float = REFRESH_EVERY_S,
    ) -> None:
        self.arn = arn
        self._read = read
        self._max_age_s = max_age_s
        self._refresh_every_s = refresh_every_s
        self._keys: list[str] = []
        self._read_at = float("-inf")
        self._refreshed_at = float("-inf")
        self._lock = threading.Lock()

    def _load(self) -> list[str]:
        current = self._read(self.arn, CURRENT)
        if current is None:
            raise KeyTooShort(f"the secret {self.arn} has no {CURRENT} value")
        keys = [check_key(current)]
        previous = self._read(self.arn, PREVIOUS)
        if previous and previous != current and len(previous.encode()) >= MIN_KEY_BYTES:
            keys.append(previous)
        return keys

    def _fresh(self) -> list[str]:
        with self._lock:
            if time.monotonic() - self._read_at >= self._max_age_s:
                self._keys = self._load()
                self._read_at = time.monotonic()
            return self._keys

    def signing_key(self) -> str:
        return self._fresh()[0]

    def verification_keys(self) -> list[str]:
        return list(self._fresh())

    def refresh(self) -> bool:
        with self._lock:
            if time.monotonic() - self._refreshed_at < self._refresh_every_s:
                return False
            self._keys = self._load()
            self._read_at = self._refreshed_at = time.monotonic()
            return True

    def forget(self) -> None:
        """Drop the cached keys (after a SnapStart restore: read them anew)."""
        with self._lock:
            self._keys = []
            self._read_at = float("-inf")


def boto3_reader(region: str) -> Reader:
    """Reads a secret's version stage with boto3 (standard retries)."""
    import boto3
    from botocore.config import Config

    client: Any = None

    def read(arn: str, stage: str) -> str | None:
        nonlocal client
        if client is None:
            client = boto3.client(
                "secretsmanager", region_name=region, config=Config(retries={"mode": "standard"})
            )
        try:
            reply = client.get_secret_value(SecretId=arn, VersionStage=stage)
        except client.exceptions.ResourceNotFoundException:
            return None  # e.g. no AWSPREVIOUS before the first rotation
        value = reply.get("SecretString")
        return value if isinstance(value, str) else None

    return read


def decode_hs256(keys: KeyRing, token: str, **options: Any) -> dict[str, Any]:
    """``jwt.decode`` with each verification key; on a signature no key matches, the keys
    are read again once (a rotation newer than the cache) before the token is refused."""
    import jwt

    for attempt in range(2):
        for key in keys.verification_keys():
            try:
                claims: dict[str, Any] = jwt.decode(token, key, algorithms=["HS256"], **options)
            except jwt.InvalidSignatureError:
                continue
            return claims
        if attempt or not keys.refresh():
            break
    raise jwt.InvalidSignatureError("Signature verification failed")


def as_key_ring(secret: str | KeyRing) -> KeyRing:
    return StaticKeys(secret) if isinstance(secret, str) else secret
