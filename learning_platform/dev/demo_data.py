"""A realistic starting set for `make dev`, so every job has work on an empty database.

Each job family adds one `_<family>(conn, users, now)` step to DEMO_STEPS.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from learning_platform.dev.demo_site import demo_pages
from learning_platform.jobs.learn_stats.queries import record_learning

log = logging.getLogger(__name__)

DemoStep = Callable[[AsyncConnection, Sequence[int], datetime], Awaitable[None]]


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
            [
                {"s": session_id, "u": page.url, "t": page.title, "v": updated_at}
                for page in demo_pages()
            ],
        )


DEMO_SOURCES = (
    (
        "Spaced repetition notes",
        "Spaced repetition is an evidence-based learning technique that is usually performed "
        "with flashcards. Newly introduced and more difficult flashcards are shown more often, "
        "while older and less difficult ones are shown less often. The spacing effect says "
        "that learning is greater when study sessions are spread out over time.",
    ),
    (
        "Forgetting curve notes",
        "The forgetting curve describes the decline of memory retention over time. Hermann "
        "Ebbinghaus studied the forgetting curve in 1885 using nonsense syllables. Each "
        "repetition of the material makes the curve flatter, so memories last longer.",
    ),
    (
        "Testing effect notes",
        "The testing effect suggests that long-term memory improves when part of the learning "
        "period is spent retrieving information. Active recall is a principle of efficient "
        "learning which claims the need to actively stimulate memory during learning.",
    ),
)


async def _question_sets(conn: AsyncConnection, users: Sequence[int], now: datetime) -> None:
    """Sources (their text in the configured storage, one marked for deletion, for
    source-cleanup), stale pending sets (question-set-cleanup) and failed sets with 0-3
    retries (question-set-retry)."""
    from learning_platform.core.settings import get_settings
    from learning_platform.storage import build_storage

    storage = build_storage(get_settings())
    source_ids = []
    for index, (title, body) in enumerate((*DEMO_SOURCES, ("Old draft", "An outdated draft."))):
        key = f"demo/users/{users[index % len(users)]}/source-{index + 1}.txt"
        await storage.put(key, body.encode(), "text/plain; charset=utf-8")
        marked = now - timedelta(days=1) if title == "Old draft" else None
        source_ids.append(
            (
                await conn.execute(
                    text(
                        "INSERT INTO sources (user_id, title, storage_key, content_type, "
                        "size_bytes, status, deletion_requested_at) VALUES (:u, :t, :k, "
                        "'text/plain; charset=utf-8', :n, :st, :d) RETURNING id"
                    ),
                    {
                        "u": users[index % len(users)], "t": title, "k": key,
                        "n": len(body.encode()), "d": marked,
                        "st": "delete_pending" if marked else "active",
                    },
                )
            ).scalar_one()
        )  # fmt: skip
    plan = [
        ("pending", now - timedelta(hours=2), 0, None),
        ("pending", now - timedelta(minutes=90), 1, None),
        *[("failed", now - timedelta(hours=1), n, "generation timed out") for n in range(4)],
    ]
    for index, (status, requested_at, retries, reason) in enumerate(plan):
        source = index % len(DEMO_SOURCES)
        await conn.execute(
            text(
                "INSERT INTO question_sets (user_id, source_id, title, status, attempt, "
                "retry_count, failure_reason, requested_at, updated_at) "
                "VALUES (:u, :s, :t, :st, :a, :r, :reason, :at, :at)"
            ),
            {
                "u": users[source % len(users)], "s": source_ids[source],
                "t": f"{DEMO_SOURCES[source][0]} quiz", "st": status, "a": retries + 1,
                "r": retries, "reason": reason, "at": requested_at,
            },
        )  # fmt: skip


# Days ago on which each demo user solved questions: a week-long streak, a broken one, one
# alive until tonight (learn-stats-daily resets it unless they learn today), a scattered one.
DEMO_LEARNING_DAYS = ((6, 5, 4, 3, 2, 1, 0), (9, 8, 7), (2, 1), (20, 13, 6, 1))


async def _learning_records(conn: AsyncConnection, users: Sequence[int], now: datetime) -> None:
    """Records with their `learning.recorded` events left pending for the outbox relay."""
    for user, days_ago in zip(users, DEMO_LEARNING_DAYS, strict=False):
        for days in days_ago:
            for question in range(3):
                await record_learning(
                    conn,
                    user_id=user,
                    question_id=question + 1,
                    solved_at=now - timedelta(days=days, minutes=question * 7),
                    correct=question != 1,
                )


DEMO_STEPS: list[DemoStep] = [_browsing_sessions, _question_sets, _learning_records]


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
