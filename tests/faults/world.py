"""Work for every scheduled job, seeded with plain SQL, and the references the fault
scenarios compare the jobs' effects with (computed in SQL, independently of the jobs)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowExecutionStatus

from learning_platform.core.settings import Settings
from learning_platform.storage import LocalObjectStorage
from tests.ai_processing_helpers import add_processing_session
from tests.factories import add_user
from tests.learning_helpers import record
from tests.question_set_factories import STUDY_TEXT, add_question_set, add_source


async def scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return await conn.scalar(text(sql), params)


async def execute(engine: AsyncEngine, sql: str, **params: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(sql), params)


def local_today(settings: Settings) -> date:
    return datetime.now(settings.timezone).date()


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


@dataclass
class World:
    """Ids of what was seeded, per job."""

    owner: int
    stale_sessions: int
    fresh_sessions: int
    processing_sessions: list[int]
    stale_sets: list[int]
    retry_sets: list[int]
    doomed_sources: list[str]
    broken_streak_users: list[int]
    corrupt_total_users: list[int]
    relay_users: list[int]
    records_per_relay_user: int


async def seed_sessions(engine: AsyncEngine, user: int, stale: int, fresh: int) -> None:
    await execute(
        engine,
        "INSERT INTO sessions (user_id, status, updated_at) "
        "SELECT :u, CASE WHEN n % 2 = 0 THEN 'recording' ELSE 'paused' END, "
        "now() - interval '2 days' - make_interval(secs => n) FROM generate_series(1, :n) n",
        u=user,
        n=stale,
    )
    await execute(
        engine,
        "INSERT INTO sessions (user_id, status) SELECT :u, 'recording' FROM generate_series(1, :n)",
        u=user,
        n=fresh,
    )


async def seed_learning_users(
    engine: AsyncEngine, settings: Settings, *, broken: int, corrupt: int
) -> tuple[list[int], list[int]]:
    """Broken streaks: three consistent learning days ending five days ago, streak still 3
    (learn-stats-daily resets it). Corrupt totals: no records but total_solved 99
    (learn-stats-weekly corrects it). Both already in this week, so the weekly job changes
    nothing else about them."""
    today = local_today(settings)
    this_week = week_start(today)
    broken_ids = [await add_user(engine, f"broken{n}@example.com") for n in range(broken)]
    corrupt_ids = [await add_user(engine, f"corrupt{n}@example.com") for n in range(corrupt)]
    async with engine.begin() as conn:
        for user in broken_ids:
            for offset in (7, 6, 5):
                day = today - timedelta(days=offset)
                await conn.execute(
                    text(
                        "INSERT INTO learning_records (user_id, question_id, solved_at, correct, "
                        "stats_applied) VALUES (:u, 1, :t, true, true)"
                    ),
                    {"u": user, "t": datetime(day.year, day.month, day.day, 12,
                                              tzinfo=settings.timezone)},
                )  # fmt: skip
                await conn.execute(
                    text("INSERT INTO learning_days (user_id, day) VALUES (:u, :d)"),
                    {"u": user, "d": day},
                )
            await conn.execute(
                text(
                    "INSERT INTO learn_stats (user_id, current_streak, longest_streak, "
                    "last_learned_date, total_solved, total_correct, week_start) "
                    "VALUES (:u, 3, 3, :last, 3, 3, :w)"
                ),
                {"u": user, "last": today - timedelta(days=5), "w": this_week},
            )
        for user in corrupt_ids:
            await conn.execute(
                text(
                    "INSERT INTO learn_stats (user_id, total_solved, total_correct, week_start) "
                    "VALUES (:u, 99, 99, :w)"
                ),
                {"u": user, "w": this_week},
            )
    return broken_ids, corrupt_ids


async def seed_relay_records(engine: AsyncEngine, users: int, per_user: int) -> list[int]:
    """Learning records written the app's way: each with its `learning.recorded` event."""
    ids = [await add_user(engine, f"learner{n}@example.com") for n in range(users)]
    now = datetime.now(UTC)
    for user in ids:
        for _ in range(per_user):
            await record(engine, user, now)
    return ids


async def seed_world(
    engine: AsyncEngine, settings: Settings, pages_url: str, *, scale: int = 1
) -> World:
    owner = await add_user(engine, "owner@example.com")
    await seed_sessions(engine, owner, stale=30 * scale, fresh=5)
    processing = [
        await add_processing_session(
            engine, owner, [f"{pages_url}/article/{n}", f"{pages_url}/article/{n + 1}"]
        )
        for n in range(4)
    ]
    storage = LocalObjectStorage(settings.data_dir / "objects")
    await storage.put("study.txt", STUDY_TEXT.encode(), "text/plain")
    study = await add_source(engine, owner, "study.txt")
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    stale_sets = [
        await add_question_set(
            engine, owner, study, requested_at=two_hours_ago, retry_count=3, attempt=4
        )
        for _ in range(10 * scale)
    ]
    retry_sets = [
        await add_question_set(engine, owner, study, status="failed", retry_count=2)
        for _ in range(5)
    ]
    doomed = [f"doomed/{n}.txt" for n in range(10 * scale)]
    for key in doomed:
        await storage.put(key, b"old notes", "text/plain")
        await add_source(engine, owner, key, deletion_requested_at=datetime.now(UTC) - timedelta(1))
    broken, corrupt = await seed_learning_users(engine, settings, broken=8, corrupt=6)
    relay_users = await seed_relay_records(engine, users=5, per_user=4)
    return World(
        owner=owner,
        stale_sessions=30 * scale,
        fresh_sessions=5,
        processing_sessions=processing,
        stale_sets=stale_sets,
        retry_sets=retry_sets,
        doomed_sources=doomed,
        broken_streak_users=broken,
        corrupt_total_users=corrupt,
        relay_users=relay_users,
        records_per_relay_user=4,
    )


async def scheduled_runs(client: Client, schedule_id: str) -> list[Any]:
    """Every workflow the schedule started. The visibility list lags behind starts, so wait
    (up to 10 s) until it shows as many runs as the schedule counts actions."""
    taken = (await client.get_schedule_handle(schedule_id).describe()).info.num_actions
    query = f"TemporalScheduledById = '{schedule_id}'"
    deadline = time.monotonic() + 10
    while True:
        runs = [execution async for execution in client.list_workflows(query)]
        if len(runs) >= taken or time.monotonic() > deadline:
            return runs
        await asyncio.sleep(0.2)


async def results_of_all_runs(client: Client, schedule_id: str) -> list[Any]:
    """The results of every run the schedule started; each must have completed."""
    runs = await scheduled_runs(client, schedule_id)
    results = await asyncio.gather(
        *(client.get_workflow_handle(run.id, run_id=run.run_id).result() for run in runs)
    )
    return list(results)


async def running_workflows(client: Client, query: str = "") -> list[Any]:
    condition = "ExecutionStatus = 'Running'" + (f" AND {query}" if query else "")
    return [execution async for execution in client.list_workflows(condition)]


async def terminate_running(client: Client) -> None:
    for execution in await running_workflows(client):
        if execution.status == WorkflowExecutionStatus.RUNNING:
            handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
            with contextlib.suppress(Exception):
                await handle.terminate("fault scenario over")
