from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleBackfill,
    ScheduleOverlapPolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.batches import checkpoint_key
from activities.learn_stats import LearnStatsActivities
from activities.registry import Dependencies
from learning_platform.core.batches import Checkpoint, save_checkpoint
from learning_platform.core.settings import Settings
from learning_platform.jobs.learn_stats.contracts import (
    LearnStatsDailyInput,
    LearnStatsDailyResult,
    LearnStatsJobParams,
    LearnStatsWeeklyInput,
    LearnStatsWeeklyResult,
)
from learning_platform.jobs.learn_stats.queries import apply_learning_records, recalculate_batch
from tests.factories import add_user
from tests.learning_helpers import drain, enqueue, production_handlers, record, stats, wait_for
from worker import create_worker
from workflows.learn_stats import LearnStatsDaily, LearnStatsWeekly

KST = ZoneInfo("Asia/Seoul")


def kst(day: date, hour: int, minute: int) -> datetime:
    return datetime.combine(day, time(hour, minute), KST)


def today() -> date:
    return datetime.now(KST).date()


@pytest.fixture
async def small_batch_worker(
    client: Client, deps: Dependencies, settings: Settings
) -> AsyncIterator[Worker]:
    """Batches of two users, so every job below crosses several keyset batches."""
    small = settings.model_copy(update={"learn_stats_batch_size": 2})
    async with create_worker(client, Dependencies(small, deps.engine, deps.temporal)) as running:
        yield running


async def test_streak_follows_calendar_days_in_seoul_not_utc(
    engine: AsyncEngine, client: Client, settings: Settings
) -> None:
    day = today()
    # 23:59 and 00:01 KST of consecutive days are the same UTC day (14:59 and 15:01 UTC).
    across_midnight = await add_user(engine, "a@example.com")
    same_day = await add_user(engine, "b@example.com")
    with_gap = await add_user(engine, "c@example.com")
    for user, moments in {
        across_midnight: [kst(day - timedelta(days=1), 23, 59), kst(day, 0, 1)],
        same_day: [kst(day - timedelta(days=1), 0, 1), kst(day - timedelta(days=1), 23, 59)],
        with_gap: [kst(day - timedelta(days=2), 23, 59), kst(day, 0, 1)],
    }.items():
        for moment in moments:
            await record(engine, user, moment)

    await drain(engine, production_handlers(client, settings))

    a, b, c = [await stats(engine, user) for user in (across_midnight, same_day, with_gap)]
    assert (a["current_streak"], a["longest_streak"], a["last_learned_date"]) == (2, 2, day)
    assert (b["current_streak"], b["last_learned_date"]) == (1, day - timedelta(days=1))
    assert (c["current_streak"], c["longest_streak"]) == (1, 1)
    assert [s["total_solved"] for s in (a, b, c)] == [2, 2, 2]


async def test_duplicate_events_count_a_record_once(
    engine: AsyncEngine, client: Client, settings: Settings
) -> None:
    user = await add_user(engine)
    record_id = await record(engine, user, kst(today(), 9, 0), correct=True)
    # A producer retry: the same record announced twice more, in the same batch.
    for _ in range(2):
        await enqueue(engine, "learning.recorded", {"learning_record_id": record_id}, user)
    handlers = production_handlers(client, settings)
    await drain(engine, handlers)
    # And once more in a later batch.
    await enqueue(engine, "learning.recorded", {"learning_record_id": record_id}, user)
    outcome = await drain(engine, handlers)

    assert outcome.delivered == 1
    row = await stats(engine, user)
    assert (row["total_solved"], row["total_correct"], row["weekly_solved"]) == (1, 1, 1)
    assert (row["current_streak"], row["longest_streak"]) == (1, 1)


async def test_out_of_order_events_give_the_in_order_streak(
    engine: AsyncEngine, client: Client, settings: Settings
) -> None:
    user = await add_user(engine)
    day = today()
    handlers = production_handlers(client, settings)
    for days_ago in (2, 0):
        await record(engine, user, kst(day - timedelta(days=days_ago), 12, 0))
        await drain(engine, handlers)
    before = await stats(engine, user)
    assert (before["current_streak"], before["longest_streak"]) == (1, 1)

    # The missing middle day arrives last, then a record from two weeks ago.
    await record(engine, user, kst(day - timedelta(days=1), 12, 0), correct=False)
    await drain(engine, handlers)
    await record(engine, user, kst(day - timedelta(days=14), 12, 0))
    await drain(engine, handlers)

    after = await stats(engine, user)
    assert (after["current_streak"], after["longest_streak"]) == (3, 3)
    assert after["last_learned_date"] == day
    assert (after["total_solved"], after["total_correct"]) == (4, 3)
    this_week = day - timedelta(days=day.weekday())
    assert after["week_start"] == this_week
    # The two-weeks-old record counts in the totals, never in this week's counter.
    expected_weekly = sum(1 for d in range(3) if day - timedelta(days=d) >= this_week)
    assert after["weekly_solved"] == expected_weekly


async def insert_stats(engine: AsyncEngine, rows: dict[int, tuple[date, int]]) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO learn_stats (user_id, last_learned_date, current_streak, "
                "longest_streak) VALUES (:u, :d, :s, :s)"
            ),
            [{"u": u, "d": d, "s": s} for u, (d, s) in rows.items()],
        )


async def streaks(engine: AsyncEngine) -> dict[int, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT user_id, current_streak FROM learn_stats"))
        return {row.user_id: row.current_streak for row in rows}


async def test_daily_reset_uses_the_scheduled_day_and_a_late_run_agrees(
    engine: AsyncEngine, client: Client, small_batch_worker: Worker
) -> None:
    scheduled = datetime(2026, 11, 21, 0, 0, tzinfo=KST)
    users = [await add_user(engine, f"u{i}@example.com") for i in range(5)]
    await insert_stats(
        engine,
        {
            users[0]: (date(2026, 11, 20), 3),  # learned yesterday: kept
            users[1]: (date(2026, 11, 19), 5),  # missed yesterday: reset
            users[2]: (date(2026, 11, 21), 4),  # learned at 01:00, before a 03:00 run: kept
            users[3]: (date(2026, 11, 10), 0),  # already reset
            users[4]: (date(2026, 11, 1), 2),  # long gone: reset
        },
    )
    expected = {users[0]: 3, users[1]: 0, users[2]: 4, users[3]: 0, users[4]: 0}

    # A real late run: a schedule's tick for 00:00 executed now (days later), via backfill.
    late = await run_daily_through_schedule(client, small_batch_worker.task_queue, scheduled)
    assert late == LearnStatsDailyResult(yesterday="2026-11-20", reset_streaks=2)
    assert await streaks(engine) == expected

    on_time = await client.execute_workflow(
        LearnStatsDaily.run,
        LearnStatsDailyInput(scheduled_time=scheduled),
        id=f"daily-{uuid.uuid4()}",
        task_queue=small_batch_worker.task_queue,
    )
    assert on_time.reset_streaks == 0
    assert await streaks(engine) == expected


async def run_daily_through_schedule(
    client: Client, task_queue: str, scheduled: datetime
) -> LearnStatsDailyResult:
    schedule_id = f"daily-{uuid.uuid4()}"
    handle = await client.create_schedule(
        schedule_id,
        Schedule(
            action=ScheduleActionStartWorkflow(
                "LearnStatsDaily", LearnStatsDailyInput(), id=schedule_id, task_queue=task_queue
            ),
            spec=ScheduleSpec(cron_expressions=["0 0 * * *"], time_zone_name="Asia/Seoul"),
            state=ScheduleState(paused=True),
        ),
    )
    try:
        await handle.backfill(
            ScheduleBackfill(
                start_at=scheduled - timedelta(minutes=1),
                end_at=scheduled + timedelta(minutes=1),
                overlap=ScheduleOverlapPolicy.ALLOW_ALL,
            )
        )

        async def started() -> bool:
            return bool((await handle.describe()).info.recent_actions)

        await wait_for(started)
        action = (await handle.describe()).info.recent_actions[0].action
        workflow_id = action.workflow_id  # type: ignore[attr-defined]
        return await client.get_workflow_handle_for(LearnStatsDaily.run, workflow_id).result()
    finally:
        await handle.delete()


async def test_weekly_repairs_corrupted_totals_and_starts_a_new_week(
    engine: AsyncEngine, client: Client, settings: Settings, small_batch_worker: Worker
) -> None:
    day = today()
    monday = day + timedelta(days=7 - day.weekday())
    old = [day - timedelta(days=n) for n in (12, 11, 10)]
    users = [await add_user(engine, f"w{i}@example.com") for i in range(4)]
    plan = {
        users[0]: [kst(d, 10, 0) for d in old],
        users[1]: [kst(old[0], 10, 0), kst(old[2], 10, 0)],
        users[2]: [kst(old[1], 10, 0)],
        users[3]: [kst(monday, 1, 0)],  # this week already, before the 04:00 run
    }
    handlers = production_handlers(client, settings)
    for user, moments in plan.items():
        for moment in moments:
            await record(engine, user, moment, correct=moment.day % 2 == 0)
    await drain(engine, handlers)
    truth = {user: await stats(engine, user) for user in users}
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE learn_stats SET total_solved = total_solved + 5 WHERE user_id = :u"),
            {"u": users[0]},
        )
        await conn.execute(
            text(
                "UPDATE learn_stats SET longest_streak = 99, current_streak = 7 WHERE user_id = :u"
            ),
            {"u": users[1]},
        )
    # Recorded but not yet delivered: the job must leave it to the relay, counted once.
    await record(engine, users[2], kst(old[2], 18, 0))

    result = await client.execute_workflow(
        LearnStatsWeekly.run,
        LearnStatsWeeklyInput(scheduled_time=kst(monday, 4, 0)),
        id=f"weekly-{uuid.uuid4()}",
        task_queue=small_batch_worker.task_queue,
    )

    assert result == LearnStatsWeeklyResult(week_start=monday.isoformat(), corrected_users=2)
    cumulative = ("total_solved", "total_correct", "longest_streak", "current_streak")
    for user in users[:2]:
        repaired = await stats(engine, user)
        assert {k: repaired[k] for k in cumulative} == {k: truth[user][k] for k in cumulative}
        assert (repaired["weekly_solved"], repaired["week_start"]) == (0, monday)
    assert (await stats(engine, users[3]))["weekly_solved"] == 1

    await drain(engine, handlers)
    assert (await stats(engine, users[2]))["total_solved"] == 2


async def test_a_retried_daily_activity_resumes_after_its_last_committed_batch(
    engine: AsyncEngine, settings: Settings
) -> None:
    users = [await add_user(engine, f"r{i}@example.com") for i in range(6)]
    broken = date(2026, 11, 1)
    await insert_stats(engine, {user: (broken, 2) for user in users})
    activities = LearnStatsActivities(engine, settings.timezone, batch_size=2)
    heartbeats: list[tuple[int, list[int]]] = []
    env = ActivityEnvironment()
    env.on_heartbeat = lambda *details: heartbeats.append(details)
    # A previous attempt committed 2 streaks reset with users[1] as the last user done.
    async with engine.begin() as conn:
        await save_checkpoint(conn, checkpoint_key(env.info), Checkpoint(2, (users[1],)))

    result = await env.run(
        activities.reset_broken_streaks,
        LearnStatsJobParams(scheduled_time=datetime(2026, 11, 21, 0, 0, tzinfo=KST)),
    )

    assert result.reset_streaks == 2 + 4
    assert await streaks(engine) == {users[0]: 2, users[1]: 2} | {u: 0 for u in users[2:]}
    # The running total and the last user done, after every batch (the last one found none).
    assert heartbeats == [(4, [users[3]]), (6, [users[5]]), (6, [users[5]])]


async def test_weekly_batch_waits_for_a_concurrent_handler_and_counts_its_record_once(
    engine: AsyncEngine, settings: Settings
) -> None:
    day = today()
    monday = day + timedelta(days=7 - day.weekday())
    users = [await add_user(engine, f"c{i}@example.com") for i in range(3)]
    for user in users:
        await record(engine, user, kst(day - timedelta(days=10), 10, 0))
    async with engine.begin() as conn:
        await apply_learning_records(
            conn, await pending_record_ids(conn), settings.schedule_timezone
        )
        await conn.execute(text("DELETE FROM outbox_events"))
    late = await record(engine, users[1], kst(day - timedelta(days=9), 10, 0))

    async with engine.connect() as handler:
        # The relay delivering the late record: its row is written, not yet committed.
        transaction = await handler.begin()
        await apply_learning_records(handler, [late], settings.schedule_timezone)
        batch = asyncio.create_task(recalculate_all(engine, monday))
        await wait_for(lambda: batch_waits_for_a_row_lock(engine))
        await transaction.commit()
        corrected = await batch

    assert corrected == 0
    after = await stats(engine, users[1])
    assert (after["total_solved"], after["week_start"], after["weekly_solved"]) == (2, monday, 0)
    assert (after["longest_streak"], after["last_learned_date"]) == (2, day - timedelta(days=9))
    assert [(await stats(engine, u))["total_solved"] for u in (users[0], users[2])] == [1, 1]


async def pending_record_ids(conn: AsyncConnection) -> list[int]:
    return list((await conn.execute(text("SELECT id FROM learning_records"))).scalars())


async def recalculate_all(engine: AsyncEngine, monday: date) -> int:
    async with engine.begin() as conn:
        progress = await recalculate_batch(
            conn,
            week_start=monday,
            yesterday=monday - timedelta(days=1),
            after=None,
            limit=10,
        )
    assert progress.last_batch
    return progress.changed


async def batch_waits_for_a_row_lock(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        waiting = await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE '%fresh AS%'"
            )
        )
    return bool(waiting)
