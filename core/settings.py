"""Configuration from environment variables (SPEC section 2), validated once at start."""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:  # core.auth imports this module
    from core.auth.keys import KeyRing, SecretsManagerKeys

DEV_SECRET_DEFAULT = "rtai-dev-secret-change-me-0123456789abcdef"
# HS256 keys shorter than the hash are weak (RFC 7518 3.2): URL-token keys must be longer.
MIN_URL_TOKEN_KEY_BYTES = 32

log = logging.getLogger("rtai.settings")


class InsecureConfiguration(ValueError):
    """A configuration that would accept forged tokens: the process must not start."""


class Settings(BaseSettings):
    """Every knob of both runtimes. Names match SPEC section 2 (case-insensitive)."""

    model_config = SettingsConfigDict(
        env_prefix="", case_sensitive=False, extra="ignore", frozen=True
    )

    # --- model provider -------------------------------------------------------------
    llm_provider: Literal["local", "openai"] | None = None
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    # In AWS the key lives in Secrets Manager; Lambda reads it by ARN at cold start
    # (ECS injects OPENAI_API_KEY itself from the same secret).
    openai_api_key_secret_arn: str | None = None
    openai_timeout_s: float = Field(default=60.0, gt=0)
    openai_max_retries: int = Field(default=2, ge=0, le=10)
    # The whole budget of a non-streaming completion on the REST API (upstream retries
    # included); past it, 504 `completion_timeout` naming the streaming endpoint. In AWS the
    # infra sets it inside the Lambda's timeout, inside API Gateway's 30 s. Unset: no bound.
    completion_timeout_s: float | None = Field(default=None, gt=0)
    # Concurrent upstream connections per process (each running stream holds one).
    openai_max_connections: int = Field(default=10_000, ge=1)
    # Connection pools the upstream connections are spread over (httpx transport only).
    openai_pool_shards: int = Field(default=8, ge=1, le=64)
    # The SDK's HTTP transport: "push" (HTTP/1.1 on httptools, streamed bodies pushed to
    # the stream; the stream service's default), "aiohttp" (the SDK's aiohttp extra) or
    # "httpx" (the SDK's default, Lambda's).
    openai_http_client: Literal["auto", "push", "aiohttp", "httpx"] = "auto"
    # Comma-separated allow-list; empty means "whatever the upstream lists".
    models: str = ""
    local_models: str = "local-model,gpt-4o-mini,gpt-4o,gpt-4.1-mini,gpt-4.1,gpt-5-mini,gpt-5"
    local_ttft_ms: float = Field(default=250.0, ge=0)
    local_token_delay_ms: float = Field(default=30.0, ge=0)

    # --- storage --------------------------------------------------------------------
    aws_region: str = Field(default="us-east-1", validation_alias="AWS_REGION")
    dynamodb_endpoint_url: str | None = None
    s3_endpoint_url: str | None = None
    sqs_endpoint_url: str | None = None
    streams_table: str = "rtai-streams"
    jobs_table: str = "rtai-jobs"
    files_bucket: str = "rtai-files"
    batch_queue_url: str | None = None

    # --- auth -----------------------------------------------------------------------
    auth_mode: Literal["jwt", "dev"] = "dev"
    auth_dev_secret: SecretStr = SecretStr(DEV_SECRET_DEFAULT)
    # Dev auth accepts tokens anyone can mint with the published secret: a process in dev
    # mode refuses to serve anything but loopback unless this says so (loudly).
    auth_dev_allow_public: bool = False
    dev_token_ttl_s: int = Field(default=12 * 3600, gt=0, le=30 * 24 * 3600)
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: int = Field(default=30, ge=0, le=300)
    # Signs the short-lived URL tokens for EventSource/WebSocket (browsers can't set headers).
    url_token_secret: SecretStr | None = None
    url_token_secret_arn: str | None = None
    url_token_ttl_s: int = Field(default=900, gt=0, le=24 * 3600)

    # --- request limits (documented in docs/limits.md) ------------------------------
    max_request_bytes: int = Field(default=1_048_576, gt=0)
    max_messages: int = Field(default=256, gt=0)
    max_message_chars: int = Field(default=200_000, gt=0)
    max_output_tokens: int = Field(default=16_384, gt=0)
    max_tools: int = Field(default=128, gt=0)  # OpenAI's own limit
    max_tool_schema_bytes: int = Field(default=65_536, gt=0)  # one tool definition, as JSON
    max_content_parts: int = Field(default=256, gt=0)  # per message

    # --- streaming ------------------------------------------------------------------
    keepalive_s: float = Field(default=15.0, gt=0)
    resume_grace_s: float = Field(default=20.0, ge=0)
    max_streams_per_user: int = Field(default=3, gt=0)
    stream_limit_policy: Literal["reject", "replace"] = "reject"

    # --- batch (OpenAI Batch API; documented in docs/batch.md) ----------------------
    # Direct multipart uploads go through API Gateway + Lambda (6 MB payload, base64):
    # larger files use a presigned S3 upload (POST /api/v1/files/uploads).
    max_upload_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    max_file_bytes: int = Field(default=100 * 1024 * 1024, gt=0)
    max_batch_lines: int = Field(default=50_000, gt=0)
    batch_chunk_lines: int = Field(default=25, gt=0, le=1000)
    batch_concurrency: int = Field(default=8, gt=0, le=256)
    batch_max_attempts: int = Field(default=5, gt=0, le=20)
    batch_backoff_base_s: float = Field(default=0.5, ge=0)
    batch_backoff_max_s: float = Field(default=20.0, ge=0)
    batch_status_check_s: float = Field(default=0.5, ge=0)
    batch_finalize_lease_s: int = Field(default=300, gt=0)
    # The batch worker stops starting upstream calls this long before its invocation ends
    # and hands what is left back to the queue (functions/batch/budget.py).
    batch_handback_margin_s: float = Field(default=15.0, ge=0)
    batch_retention_s: int = Field(default=30 * 24 * 3600, gt=0)
    batch_inline_content_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    batch_min_window_s: int = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.auth_mode == "jwt":
            missing = [
                name
                for name, value in (
                    ("JWT_JWKS_URL", self.jwt_jwks_url),
                    ("JWT_ISSUER", self.jwt_issuer),
                    ("JWT_AUDIENCE", self.jwt_audience),
                )
                if not value
            ]
            if missing:
                raise ValueError(
                    f"AUTH_MODE=jwt needs {', '.join(missing)}: without the issuer and the"
                    " audience, tokens minted for another app on the same JWKS would verify"
                )
        if self.url_token_secret is not None:
            _check_url_token_key(self.url_token_secret)
        if (
            self.provider == "openai"
            and self.openai_api_key is None
            and not self.openai_base_url
            and not self.openai_api_key_secret_arn
        ):
            raise ValueError("LLM_PROVIDER=openai needs OPENAI_API_KEY or OPENAI_BASE_URL")
        return self

    @property
    def provider(self) -> Literal["local", "openai"]:
        """SPEC: `local` unless `OPENAI_API_KEY` is set."""
        if self.llm_provider is not None:
            return self.llm_provider
        has_key = self.openai_api_key is not None or self.openai_api_key_secret_arn is not None
        return "openai" if has_key else "local"

    def openai_key(self) -> str | None:
        """The upstream's API key: ``OPENAI_API_KEY``, or read by ARN when first needed."""
        if self.openai_api_key is not None:
            return self.openai_api_key.get_secret_value()
        if self.openai_api_key_secret_arn:
            return _read_secret(self.openai_api_key_secret_arn)
        return None

    def url_token_keys(self) -> KeyRing:
        """The URL-token key: its own secret (given, or by ARN: read when first needed and
        again on rotation, :mod:`core.auth.keys`); only dev auth falls back to the dev
        secret. Raises :class:`InsecureConfiguration` when ``jwt`` mode has none (the
        stream service asks at start-up, so it stops there, never per request)."""
        from core.auth.keys import StaticKeys

        if self.url_token_secret is not None:
            return StaticKeys(self.url_token_secret.get_secret_value())
        if self.url_token_secret_arn:
            return _secret_key_ring(self.url_token_secret_arn, self.aws_region)
        if self.auth_mode == "dev":
            return StaticKeys(self.auth_dev_secret.get_secret_value())
        raise InsecureConfiguration(
            "AUTH_MODE=jwt needs URL_TOKEN_SECRET (or URL_TOKEN_SECRET_ARN): a key of its own,"
            f" at least {MIN_URL_TOKEN_KEY_BYTES} bytes; the dev secret is never used for URL"
            " tokens in jwt mode"
        )

    @property
    def url_token_key(self) -> str:
        """The key URL tokens are signed with now (see :meth:`url_token_keys`)."""
        from core.auth.keys import KeyTooShort

        try:
            return self.url_token_keys().signing_key()
        except KeyTooShort as exc:
            raise InsecureConfiguration(str(exc)) from exc

    @property
    def is_local_aws(self) -> bool:
        return self.dynamodb_endpoint_url is not None


def resolve_secrets(settings: Settings) -> Settings:
    """Secrets given by ARN stay unread here: the model provider's key is read at its first
    use (:meth:`Settings.openai_key`) and the URL-token key when first needed and again on
    rotation (:meth:`Settings.url_token_keys`). Both are set or rotated after deploy, and a
    SnapStart snapshot of an initialised function must hold neither."""
    return settings


_KEY_RINGS: dict[str, SecretsManagerKeys] = {}


def _secret_key_ring(arn: str, region: str) -> SecretsManagerKeys:
    """One cached key ring per secret per process."""
    from core.auth.keys import SecretsManagerKeys, boto3_reader

    ring = _KEY_RINGS.get(arn)
    if ring is None:
        ring = _KEY_RINGS[arn] = SecretsManagerKeys(arn, boto3_reader(region))
    return ring


def forget_secrets() -> None:
    """After a SnapStart restore: every secret read anew at its next use."""
    for ring in _KEY_RINGS.values():
        ring.forget()


def _check_url_token_key(key: SecretStr) -> None:
    if len(key.get_secret_value().encode()) < MIN_URL_TOKEN_KEY_BYTES:
        raise InsecureConfiguration(
            f"URL_TOKEN_SECRET must be at least {MIN_URL_TOKEN_KEY_BYTES} bytes"
            " (HS256 key; a short one can be brute-forced offline from any URL token)"
        )


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (``127.0.0.0/8``, ``::1``, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_safe_exposure(settings: Settings, bind_host: str | None) -> None:
    """Fail closed at start-up: dev auth only on loopback unless explicitly allowed.

    ``bind_host`` is the address the process listens on; ``None`` for a process that is
    reachable from wherever it is deployed (a Lambda function behind API Gateway).
    Raises :class:`InsecureConfiguration` with what to change.
    """
    if settings.auth_mode != "dev":
        return
    if bind_host is not None and is_loopback(bind_host):
        return
    where = f"listens on {bind_host}" if bind_host is not None else "is reachable from outside"
    if not settings.auth_dev_allow_public:
        raise InsecureConfiguration(
            f"AUTH_MODE=dev and this process {where}: anyone could mint tokens with the dev"
            " secret and act as any user. Use AUTH_MODE=jwt (JWT_JWKS_URL, JWT_ISSUER,"
            " JWT_AUDIENCE, URL_TOKEN_SECRET), listen on 127.0.0.1, or set"
            " AUTH_DEV_ALLOW_PUBLIC=1 if you really mean it."
        )
    default_secret = settings.auth_dev_secret.get_secret_value() == DEV_SECRET_DEFAULT
    log.warning(
        "AUTH_DEV_ALLOW_PUBLIC=1: dev auth (self-minted HS256 tokens%s) and this process %s."
        " Anyone who can mint a token can act as any user.",
        ", with the PUBLISHED default secret" if default_secret else "",
        where,
    )


def _read_secret(arn: str) -> str:
    from aws_lambda_powertools.utilities.parameters import get_secret

    value = get_secret(arn, max_age=3600)
    return value if isinstance(value, str) else value.decode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read from the environment once, secrets resolved)."""
    return resolve_secrets(Settings())
