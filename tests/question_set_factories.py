"""Sources and question sets for tests, inserted with plain SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

STUDY_TEXT = (
    "Spaced repetition is an evidence-based learning technique that is usually performed "
    "with flashcards. Newly introduced and more difficult flashcards are shown more "
    "frequently, while older and less difficult ones are shown less often. The forgetting "
    "curve hypothesizes the decline of memory retention in time. Hermann Ebbinghaus studied "
    "the forgetting curve in 1885 using nonsense syllables. The testing effect suggests that "
    "long-term memory improves when part of the learning period is spent retrieving "
    "information. Active recall is a principle of efficient learning which claims the need to "
    "actively stimulate memory during the learning process."
)


async def add_source(
    engine: AsyncEngine,
    user_id: int,
    storage_key: str,
    *,
    content_type: str = "text/plain",
    deletion_requested_at: datetime | None = None,
    title: str | None = None,
) -> int:
    """A source row (titled by its storage key unless `title` is given)."""
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "INSERT INTO sources (user_id, title, storage_key, content_type, size_bytes, "
                "status, deletion_requested_at) VALUES (:u, COALESCE(:t, :k), :k, :c, 100, "
                "CASE WHEN CAST(:d AS timestamptz) IS NULL THEN 'active' "
                "ELSE 'delete_pending' END, :d) RETURNING id"
            ),
            {
                "u": user_id,
                "t": title,
                "k": storage_key,
                "c": content_type,
                "d": deletion_requested_at,
            },
        )
        return int(result.scalar_one())


async def add_question_set(
    engine: AsyncEngine,
    user_id: int,
    source_id: int,
    *,
    status: str = "pending",
    requested_at: datetime | None = None,
    retry_count: int = 0,
    attempt: int = 1,
    retryable: bool = True,
) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "INSERT INTO question_sets (user_id, source_id, title, status, requested_at, "
                "retry_count, attempt, retryable) "
                "VALUES (:u, :s, 'Quiz', :st, COALESCE(:r, now()), :rc, :a, :ok) RETURNING id"
            ),
            {
                "u": user_id,
                "s": source_id,
                "st": status,
                "r": requested_at,
                "rc": retry_count,
                "a": attempt,
                "ok": retryable,
            },
        )
        return int(result.scalar_one())


@dataclass
class SetRow:
    status: str
    attempt: int
    retry_count: int
    version: int
    retryable: bool
    failure_reason: str | None
    question_attempts: list[int]


async def question_set(engine: AsyncEngine, question_set_id: int) -> SetRow:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, attempt, retry_count, version, retryable, failure_reason "
                    "FROM question_sets WHERE id = :id"
                ),
                {"id": question_set_id},
            )
        ).one()
        attempts = await conn.scalars(
            text("SELECT attempt FROM questions WHERE question_set_id = :id ORDER BY position"),
            {"id": question_set_id},
        )
        return SetRow(**row._mapping, question_attempts=list(attempts))


async def rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    """Run `sql` in its own committed transaction; its result rows."""
    async with engine.begin() as conn:
        result = await conn.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []
