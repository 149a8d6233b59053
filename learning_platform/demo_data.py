"""A realistic starting set for `make dev`, so every job has work on an empty database.

Each job family adds one `_<family>(conn, users, now)` step to DEMO_STEPS.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

DemoStep = Callable[[AsyncConnection, Sequence[int], datetime], Awaitable[None]]

DEMO_PAGES = (
    ("https://en.wikipedia.org/wiki/Spaced_repetition", "Spaced repetition"),
    ("https://en.wikipedia.org/wiki/Forgetting_curve", "Forgetting curve"),
    ("https://en.wikipedia.org/wiki/Testing_effect", "Testing effect"),
    ("https://en.wikipedia.org/wiki/Mind_map", "Mind map"),
)


async def _users(conn: AsyncConnection) -> list[int]:
    rows = await conn.execute(
        text(
            "INSERT INTO users (email, display_name) "
            "SELECT 'learner' || n || '@example.com', 'Learner ' || n FROM generate_series(1, 5) n "
            "RETURNING id"
        )
    )
    return [row.id for row in rows]


async def _browsing_sessions(conn: AsyncConnection, users: Sequence[int], now: datetime) -> None:
    """Active, stale (for cleanup-stale-sessions) and processing (for ai-processing) sessions."""
    plan = [
        ("recording", now - timedelta(minutes=5)),
        ("paused", now - timedelta(hours=2)),
        ("recording", now - timedelta(hours=30)),
        ("paused", now - timedelta(days=3)),
        ("processing", now - timedelta(minutes=1)),
        ("completed", now - timedelta(days=1)),
    ]
    for index, (status, updated_at) in enumerate(plan):
        session_id = (
            await conn.execute(
                text(
                    "INSERT INTO sessions (user_id, title, status, updated_at, ended_at) "
                    "VALUES (:u, :title, :s, :t, CASE WHEN :s IN ('processing', 'completed') "
                    "THEN CAST(:t AS timestamptz) END) RETURNING id"
                ),
                {
                    "u": users[index % len(users)],
                    "title": f"Study session {index + 1}",
                    "s": status,
                    "t": updated_at,
                },
            )
        ).scalar_one()
        await conn.execute(
            text(
                "INSERT INTO page_visits (session_id, url, title, visited_at) "
                "VALUES (:s, :u, :t, :v)"
            ),
            [{"s": session_id, "u": url, "t": title, "v": updated_at} for url, title in DEMO_PAGES],
        )


DEMO_STEPS: list[DemoStep] = [_browsing_sessions]


async def load_demo_data(engine: AsyncEngine) -> bool:
    """Insert the demo set if the database has no users; return whether it did."""
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        if await conn.scalar(text("SELECT EXISTS (SELECT 1 FROM users)")):
            return False
        users = await _users(conn)
        for step in DEMO_STEPS:
            await step(conn, users, now)
    log.info("demo data loaded", extra={"users": len(users)})
    return True
