"""Rows for tests, inserted with plain SQL so tests do not depend on the code under test."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.testing import ActivityEnvironment


async def add_user(engine: AsyncEngine, email: str = "user@example.com") -> int:
    async with engine.begin() as conn:
        result = await conn.execute(
            text("INSERT INTO users (email, display_name) VALUES (:e, :e) RETURNING id"),
            {"e": email},
        )
        return int(result.scalar_one())


async def add_session(
    engine: AsyncEngine, user_id: int, status: str, updated_at: datetime | None = None
) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "INSERT INTO sessions (user_id, status, updated_at) "
                "VALUES (:u, :s, COALESCE(:t, now())) RETURNING id"
            ),
            {"u": user_id, "s": status, "t": updated_at},
        )
        return int(result.scalar_one())


async def session_statuses(engine: AsyncEngine) -> dict[int, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT id, status FROM sessions"))
        return {row.id: row.status for row in rows}


def activity_of_run(run: int) -> ActivityEnvironment:
    """An activity environment of its own workflow run: concurrent sweeps of separate runs
    each keep their own checkpoint, as they do on a worker."""
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, workflow_run_id=f"run-{run}")
    return environment
