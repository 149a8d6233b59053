"""The retention job: each table's rows older than its age before the scheduled time go."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, ScheduleBackfill
from temporalio.worker import Worker

from activities.registry import Dependencies
from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing import queries as session_processing
from learning_platform.jobs.retention.contracts import RetentionInput, RetentionResult
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import apply, full_id
from tests.factories import add_session, add_user
from tests.schedule_helpers import results_of_recent_runs, wait_for_actions
from worker import create_workers
from workflows.retention import Retention

SCHEDULED = datetime(2026, 11, 24, 3, 30, tzinfo=UTC)
TICK = timedelta(microseconds=1)
AGES = RetentionInput(
    scheduled_time=SCHEDULED,
    notification_max_age_days=30,
    dead_letter_max_age_days=14,
    page_crawl_max_age_days=90,
    url_summary_ttl_days=7,
)


async def insert(engine: AsyncEngine, sql: str, rows: list[dict[str, object]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(sql), rows)


async def add_notifications(engine: AsyncEngine, user: int, times: list[datetime]) -> None:
    await insert(
        engine,
        "INSERT INTO notifications (user_id, kind, payload, dedupe_key, created_at) "
        "VALUES (:u, 'test', '{}', :k, :t)",
        [{"u": user, "k": str(uuid.uuid4()), "t": t} for t in times],
    )


async def add_dead_letters(engine: AsyncEngine, times: list[datetime]) -> None:
    await insert(
        engine,
        "INSERT INTO outbox_dead_letters (id, aggregate_type, aggregate_id, event_type, payload,"
        " created_at, attempts, last_error, dead_lettered_at)"
        " VALUES (:id, 'test', '1', 'test.happened', '{}', :t, 5, 'boom', :t)",
        [{"id": i + 1, "t": t} for i, t in enumerate(times)],
    )


async def add_crawls(engine: AsyncEngine, session: int, times: list[datetime]) -> None:
    await insert(
        engine,
        "INSERT INTO page_crawls (session_id, url, outcome, crawled_at)"
        " VALUES (:s, :url, 'summarized', :t)",
        [{"s": session, "url": f"https://example.com/{i}", "t": t} for i, t in enumerate(times)],
    )


async def add_summaries(engine: AsyncEngine, times: list[datetime]) -> None:
    await insert(
        engine,
        "INSERT INTO url_summaries (url, generator, title, summary, key_points, created_at)"
        " VALUES (:url, 'offline', 't', 's', '[]', :t)",
        [{"url": f"https://example.com/{i}", "t": t} for i, t in enumerate(times)],
    )


async def remaining(engine: AsyncEngine, table: str, column: str) -> list[datetime]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(f"SELECT {column} FROM {table} ORDER BY {column}"))
        return [row[0] for row in rows]


def around(cutoff: datetime) -> list[datetime]:
    """Rows long before, just before, at and just after the cutoff."""
    return [cutoff - timedelta(days=400), cutoff - TICK, cutoff, cutoff + TICK]


@pytest.fixture
async def small_batch_worker(
    client: Client, settings: Settings, engine: AsyncEngine
) -> AsyncIterator[Worker]:
    """The production wiring with batches of 2, so every table takes several batches."""
    small = settings.model_copy(update={"retention_batch_size": 2})
    main, ai = create_workers(client, Dependencies(settings=small, engine=engine, temporal=client))
    async with ai, main:
        yield main


async def test_each_table_keeps_rows_at_and_after_its_cutoff(
    engine: AsyncEngine, client: Client, small_batch_worker: Worker
) -> None:
    user = await add_user(engine)
    session = await add_session(engine, user, "completed")
    notification_cutoff = SCHEDULED - timedelta(days=30)
    await add_notifications(engine, user, around(notification_cutoff) * 2)
    await add_dead_letters(engine, around(SCHEDULED - timedelta(days=14)))
    await add_crawls(engine, session, around(SCHEDULED - timedelta(days=90)))
    await add_summaries(engine, around(SCHEDULED - timedelta(days=7)))

    result = await client.execute_workflow(
        Retention.run,
        AGES,
        id=f"retention-{uuid.uuid4()}",
        task_queue=small_batch_worker.task_queue,
    )

    assert result == RetentionResult(
        notifications=4, dead_letters=2, page_crawls=2, url_summaries=2
    )
    kept = await remaining(engine, "notifications", "created_at")
    assert kept == sorted([notification_cutoff, notification_cutoff + TICK] * 2)
    cutoff = SCHEDULED - timedelta(days=14)
    assert await remaining(engine, "outbox_dead_letters", "dead_lettered_at") == [
        cutoff,
        cutoff + TICK,
    ]
    cutoff = SCHEDULED - timedelta(days=90)
    assert await remaining(engine, "page_crawls", "crawled_at") == [cutoff, cutoff + TICK]
    cutoff = SCHEDULED - timedelta(days=7)
    assert await remaining(engine, "url_summaries", "created_at") == [cutoff, cutoff + TICK]

    again = await client.execute_workflow(
        Retention.run,
        AGES,
        id=f"retention-{uuid.uuid4()}",
        task_queue=small_batch_worker.task_queue,
    )
    assert again == RetentionResult(notifications=0, dead_letters=0, page_crawls=0, url_summaries=0)


async def test_the_daily_schedule_uses_the_settings_and_its_scheduled_time(
    engine: AsyncEngine, client: Client, settings: Settings, worker: Worker
) -> None:
    settings = settings.model_copy(update={"notification_retention_days": 2})
    await apply(client, settings, declared_schedules(settings))
    schedule_id = full_id("retention", settings)
    user = await add_user(engine)
    # A tick of the cron (03:30 in SCHEDULE_TIMEZONE), yesterday.
    now = datetime.now(settings.timezone)
    tick = now.replace(hour=3, minute=30, second=0, microsecond=0) - timedelta(days=1)
    await add_notifications(engine, user, around(tick - timedelta(days=2)))

    await client.get_schedule_handle(schedule_id).backfill(
        ScheduleBackfill(start_at=tick - timedelta(seconds=1), end_at=tick + timedelta(seconds=1))
    )
    async with asyncio.timeout(60):
        description = await wait_for_actions(client, schedule_id, 1)
    [result] = await results_of_recent_runs(client, description)

    assert result["notifications"] == 2
    assert await remaining(engine, "notifications", "created_at") == [
        tick - timedelta(days=2),
        tick - timedelta(days=2) + TICK,
    ]


async def test_an_expired_summary_is_no_longer_served_from_the_cache(
    engine: AsyncEngine, client: Client, small_batch_worker: Worker
) -> None:
    await add_summaries(engine, [SCHEDULED - timedelta(days=8), SCHEDULED - timedelta(days=6)])
    urls = ["https://example.com/0", "https://example.com/1"]
    async with engine.connect() as conn:
        assert set(await session_processing.cached_summaries(conn, urls, "offline")) == set(urls)

    await client.execute_workflow(
        Retention.run,
        AGES,
        id=f"retention-{uuid.uuid4()}",
        task_queue=small_batch_worker.task_queue,
    )

    # The page of the expired summary is read and summarised again by the next session.
    async with engine.connect() as conn:
        assert set(await session_processing.cached_summaries(conn, urls, "offline")) == {urls[1]}
