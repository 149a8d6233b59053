"""learn-stats-daily over --users users and learn-stats-weekly over --records learning records,
each ÷ the equivalent raw SQL (one statement, no batches, no locks), measured in one run on the
same data restored before each measurement (median of --runs).

    .venv/bin/python -m bench.learn_stats [--users N] [--records N] [--runs N] [--batch-size N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.stack import BenchStack, bench_stack, timed
from contracts.learn_stats import LearnStatsDailyInput, LearnStatsWeeklyInput
from learning_platform import learn_stats
from workflows.learn_stats import LearnStatsDaily, LearnStatsWeekly

KST = ZoneInfo("Asia/Seoul")
MONDAY = date(2026, 11, 23)
DAILY_AT = datetime(2026, 11, 21, 0, 0, tzinfo=KST)
WEEKLY_AT = datetime(2026, 11, 23, 4, 0, tzinfo=KST)
YESTERDAY = date(2026, 11, 20)


async def autocommit(engine: AsyncEngine, *statements: str) -> None:
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        for statement in statements:
            await conn.execute(text(statement))


async def load(engine: AsyncEngine, users: int, records: int) -> None:
    started = time.perf_counter()
    await autocommit(
        engine,
        "INSERT INTO users (email, display_name) "
        f"SELECT 'u' || n, 'u' FROM generate_series(1, {users}) n",
        # Records in time order of random users, over the four weeks before the weekly run.
        "INSERT INTO learning_records (user_id, question_id, solved_at, correct, stats_applied) "
        f"SELECT 1 + (hashint8(n) & 2147483647) % {users}, n, "
        f"timestamptz '2026-10-26 00:00+09' + (n * interval '28 days') / {records}, "
        f"n % 3 <> 0, true FROM generate_series(1, {records}) n",
        "INSERT INTO learning_days SELECT DISTINCT user_id, "
        "CAST(solved_at AT TIME ZONE 'Asia/Seoul' AS date) FROM learning_records",
        "INSERT INTO learn_stats (user_id, total_solved, total_correct, last_learned_date, "
        "current_streak, longest_streak, week_start, weekly_solved) "
        "SELECT u.id, coalesce(t.n, 0), coalesce(t.c, 0), "
        "date '2026-11-20' - (u.id % 10)::int, 1 + u.id % 30, 30, date '2026-11-16', 5 "
        "FROM users u LEFT JOIN (SELECT user_id, count(*) n, count(*) FILTER (WHERE correct) c "
        "FROM learning_records GROUP BY user_id) t ON t.user_id = u.id",
        "CREATE TABLE learn_stats_original AS SELECT * FROM learn_stats",
        "VACUUM ANALYZE users, learning_records, learning_days, learn_stats",
    )
    print(f"loaded in {time.perf_counter() - started:.0f} s", flush=True)


async def restore(engine: AsyncEngine) -> None:
    """Back to the loaded state (one in ten totals drifted), then VACUUM."""
    await autocommit(
        engine,
        "UPDATE learn_stats s SET current_streak = o.current_streak, "
        "total_solved = o.total_solved + (o.user_id % 10 = 0)::int, "
        "longest_streak = o.longest_streak, last_learned_date = o.last_learned_date, "
        "week_start = o.week_start, weekly_solved = o.weekly_solved "
        "FROM learn_stats_original o WHERE o.user_id = s.user_id",
        "VACUUM ANALYZE learn_stats",
    )


RAW_DAILY = text(
    "UPDATE learn_stats SET current_streak = 0, version = version + 1, updated_at = now() "
    "WHERE current_streak > 0 AND (last_learned_date IS NULL OR last_learned_date < :y)"
)


async def raw_daily(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        return int((await conn.execute(RAW_DAILY, {"y": YESTERDAY})).rowcount)  # type: ignore[attr-defined]


async def raw_weekly(engine: AsyncEngine) -> int:
    """The job's recalculation as one statement over every user (no batches, no row locks)."""
    async with engine.begin() as conn:
        corrected = await conn.scalar(
            learn_stats._RECALCULATE,
            {"first": 0, "last": 2**62, "yesterday": MONDAY - timedelta(days=1),
             "week_start": MONDAY},
        )  # fmt: skip
        return int(corrected or 0)


async def median(
    engine: AsyncEngine, runs: int, action: Callable[[], Awaitable[int]]
) -> tuple[float, int]:
    durations, result = [], 0
    for _ in range(runs):
        await restore(engine)
        seconds, result = await timed(action)
        durations.append(seconds)
    return statistics.median(durations), result


async def main(users: int, records: int, runs: int, batch_size: int) -> None:
    async with bench_stack(learn_stats_batch_size=batch_size) as stack:
        print(f"loading {users:,} users and {records:,} learning records ...", flush=True)
        await load(stack.engine, users, records)
        daily_job, weekly_job = job_runners(stack)
        await restore(stack.engine)
        await daily_job()  # warm-up
        raw_d, raw_d_count = await median(stack.engine, runs, lambda: raw_daily(stack.engine))
        job_d, job_d_count = await median(stack.engine, runs, daily_job)
        assert raw_d_count == job_d_count, (raw_d_count, job_d_count)
        raw_w, raw_w_count = await median(stack.engine, runs, lambda: raw_weekly(stack.engine))
        job_w, job_w_count = await median(stack.engine, runs, weekly_job)
        assert raw_w_count == job_w_count, (raw_w_count, job_w_count)

    print(f"batch size                  {batch_size:,} users")
    print(f"daily: {users:,} users, {job_d_count:,} streaks reset")
    print(f"  raw UPDATE                {raw_d:8.3f} s   (median of {runs})")
    print(f"  job (Temporal workflow)   {job_d:8.3f} s   job / raw = {job_d / raw_d:.2f}x")
    print(f"weekly: {records:,} records, {job_w_count:,} users corrected")
    print(f"  raw single statement      {raw_w:8.3f} s")
    print(f"  job (Temporal workflow)   {job_w:8.3f} s   job / raw = {job_w / raw_w:.2f}x")
    print("target: job / raw <= 1.5x")


def job_runners(
    stack: BenchStack,
) -> tuple[Callable[[], Awaitable[int]], Callable[[], Awaitable[int]]]:
    async def daily() -> int:
        result = await stack.client.execute_workflow(
            LearnStatsDaily.run,
            LearnStatsDailyInput(scheduled_time=DAILY_AT),
            id=f"bench-daily-{uuid.uuid4()}",
            task_queue=stack.settings.task_queue,
        )
        return result.reset_streaks

    async def weekly() -> int:
        result = await stack.client.execute_workflow(
            LearnStatsWeekly.run,
            LearnStatsWeeklyInput(scheduled_time=WEEKLY_AT),
            id=f"bench-weekly-{uuid.uuid4()}",
            task_queue=stack.settings.task_queue,
        )
        return result.corrected_users

    return daily, weekly


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(main(args.users, args.records, args.runs, args.batch_size))
