from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy.engine import Connection

from learning_platform.core.database import create_engine
from learning_platform.schema import metadata

target_metadata = metadata


def _database_url() -> str:
    url = context.config.attributes.get("database_url") or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError(
            "Set DATABASE_URL, or run migrations through learning_platform.migrations"
        )
    return str(url)


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_engine(_database_url(), pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def _in_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
elif _in_running_loop():
    raise RuntimeError(
        "call learning_platform.migrations.upgrade() outside an event loop (a thread)"
    )
else:
    asyncio.run(_run_online())
