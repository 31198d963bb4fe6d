"""Configuration from environment variables (SPEC section 2), validated once at start."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_DEFAULT = "rtai-dev-secret-change-me-0123456789abcdef"


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
    # Concurrent upstream connections per process (each running stream holds one).
    openai_max_connections: int = Field(default=10_000, ge=1)
    # Connection pools the upstream connections are spread over (httpx transport only).
    openai_pool_shards: int = Field(default=8, ge=1, le=64)
    # The SDK's HTTP transport: "aiohttp" (the SDK's aiohttp extra; C HTTP parser, no
    # per-read cancel scope; the stream service's default) or "httpx" (the SDK's default).
    openai_http_client: Literal["auto", "aiohttp", "httpx"] = "auto"
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
    dev_token_ttl_s: int = Field(default=12 * 3600, gt=0, le=30 * 24 * 3600)
    jwt_jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: int = Field(default=30, ge=0, le=300)
    # Signs the short-lived URL tokens for EventSource/WebSocket (browsers can't set headers).
    url_token_secret: SecretStr | None = None
    url_token_secret_arn: str | None = None
    url_token_ttl_s: int = Field(default=3600, gt=0, le=24 * 3600)

    # --- request limits (documented in docs/limits.md) ------------------------------
    max_request_bytes: int = Field(default=1_048_576, gt=0)
    max_messages: int = Field(default=256, gt=0)
    max_message_chars: int = Field(default=200_000, gt=0)
    max_output_tokens: int = Field(default=16_384, gt=0)

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
    batch_retention_s: int = Field(default=30 * 24 * 3600, gt=0)
    batch_inline_content_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    batch_min_window_s: int = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.auth_mode == "jwt" and not self.jwt_jwks_url:
            raise ValueError("AUTH_MODE=jwt needs JWT_JWKS_URL (and usually JWT_ISSUER)")
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

    @property
    def url_token_key(self) -> str:
        secret = self.url_token_secret or self.auth_dev_secret
        return secret.get_secret_value()

    @property
    def is_local_aws(self) -> bool:
        return self.dynamodb_endpoint_url is not None


def resolve_secrets(settings: Settings) -> Settings:
    """Fill secrets given by ARN (Secrets Manager, cached by Powertools) into the settings."""
    updates: dict[str, SecretStr] = {}
    if settings.openai_api_key is None and settings.openai_api_key_secret_arn:
        updates["openai_api_key"] = SecretStr(_read_secret(settings.openai_api_key_secret_arn))
    if settings.url_token_secret is None and settings.url_token_secret_arn:
        updates["url_token_secret"] = SecretStr(_read_secret(settings.url_token_secret_arn))
    return settings.model_copy(update=updates) if updates else settings


def _read_secret(arn: str) -> str:
    from aws_lambda_powertools.utilities.parameters import get_secret

    value = get_secret(arn, max_age=3600)
    return value if isinstance(value, str) else value.decode()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read from the environment once, secrets resolved)."""
    return resolve_secrets(Settings())
