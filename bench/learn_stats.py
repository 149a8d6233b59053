"""learn-stats-daily over --users users and learn-stats-weekly over --records learning records,
each ÷ the equivalent raw SQL (one statement, no batches, no locks), measured in one run on the
same data restored before each measurement (median of --runs), the jobs once per batch size.

    .venv/bin/python -m bench.learn_stats [--users N] [--records N] [--runs N]
                                          [--batch-size N [N ...]]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.registry import Dependencies
from bench.stack import BenchStack, bench_stack, timed
from learning_platform.commands.process_exit import exits_without_teardown
from learning_platform.jobs.learn_stats import queries as learn_stats
from learning_platform.jobs.learn_stats.contracts import LearnStatsDailyInput, LearnStatsWeeklyInput
from worker import create_worker
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


LOADED_TABLES = ("learning_records", "learning_days", "learn_stats")

# Secondary indexes and foreign keys of the loaded tables, as the migrations defined them.
SCHEMA_EXTRAS = text(
    """
    SELECT 'ALTER TABLE ' || conrelid::regclass || ' DROP CONSTRAINT ' || quote_ident(conname),
           'ALTER TABLE ' || conrelid::regclass || ' ADD CONSTRAINT ' || quote_ident(conname)
               || ' ' || pg_get_constraintdef(oid)
      FROM pg_constraint
     WHERE conrelid = ANY(CAST(:tables AS regclass[])) AND contype = 'f'
    UNION ALL
    SELECT 'DROP INDEX ' || indexrelid::regclass, pg_get_indexdef(indexrelid)
      FROM pg_index
     WHERE indrelid = ANY(CAST(:tables AS regclass[])) AND NOT indisprimary
    """
)


async def load(engine: AsyncEngine, users: int, records: int) -> None:
    """Set-based generation with the secondary indexes and foreign keys created after the
    load (each row checked against `users` and inserted into a random place of a 10 M-entry
    index is what made the load take longer than 17 minutes); rows in primary-key order."""
    started = time.perf_counter()
    async with engine.connect() as conn:
        extras = (await conn.execute(SCHEMA_EXTRAS, {"tables": list(LOADED_TABLES)})).all()
    await autocommit(engine, *(drop for drop, _ in extras))
    await autocommit(
        engine,
        "SET work_mem = '256MB'",
        "INSERT INTO users (email, display_name) "
        f"SELECT 'u' || n, 'u' FROM generate_series(1, {users}) n",
        # Records in time order of random users, over the four weeks before the weekly run.
        "INSERT INTO learning_records (user_id, question_id, solved_at, correct, stats_applied) "
        f"SELECT 1 + (hashint8(n) & 2147483647) % {users}, n, "
        f"timestamptz '2026-10-26 00:00+09' + (n * interval '28 days') / {records}, "
        f"n % 3 <> 0, true FROM generate_series(1, {records}) n",
        "INSERT INTO learning_days SELECT DISTINCT user_id, "
        "CAST(solved_at AT TIME ZONE 'Asia/Seoul' AS date) FROM learning_records ORDER BY 1, 2",
        "INSERT INTO learn_stats (user_id, total_solved, total_correct, last_learned_date, "
        "current_streak, longest_streak, week_start, weekly_solved) "
        "SELECT u.id, coalesce(t.n, 0), coalesce(t.c, 0), "
        "date '2026-11-20' - (u.id % 10)::int, 1 + u.id % 30, 30, date '2026-11-16', 5 "
        "FROM users u LEFT JOIN (SELECT user_id, count(*) n, count(*) FILTER (WHERE correct) c, "
        "min(solved_at) AS first FROM learning_records GROUP BY user_id) t ON t.user_id = u.id "
        # As the learning.recorded handler creates them: in the order users first learned,
        # which for these random users is unrelated to user_id order.
        "ORDER BY t.first NULLS LAST",
        "CREATE TABLE learn_stats_original AS SELECT * FROM learn_stats",
    )
    await autocommit(
        engine,
        "SET maintenance_work_mem = '512MB'",
        *sorted((create for _, create in extras), key=lambda ddl: "FOREIGN KEY" in ddl),
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


# Written on its own, not the job's statement with its bounds opened: the same result is
# checked on the whole table (fingerprint), not trusted.
RAW_WEEKLY = text(
    "WITH"
    + learn_stats._STREAKS.format(users="true")
    + """
    , totals AS (
        SELECT user_id, count(*) AS solved, count(*) FILTER (WHERE correct) AS correct
          FROM learning_records WHERE stats_applied GROUP BY user_id
    ), fresh AS (
        SELECT s.user_id, coalesce(t.solved, 0) AS solved, coalesce(t.correct, 0) AS correct,
               coalesce(k.longest, 0) AS longest, k.last_day,
               CASE WHEN k.last_day >= :yesterday THEN k.latest_run ELSE 0 END AS streak,
               s.week_start IS NULL OR s.week_start < :monday AS new_week,
               (s.total_solved, s.total_correct, s.longest_streak, s.last_learned_date,
                s.current_streak)
                 IS DISTINCT FROM
               (coalesce(t.solved, 0), coalesce(t.correct, 0), coalesce(k.longest, 0),
                k.last_day, CASE WHEN k.last_day >= :yesterday THEN k.latest_run ELSE 0 END)
                 AS corrected
          FROM learn_stats s LEFT JOIN totals t USING (user_id) LEFT JOIN streaks k USING (user_id)
    ), updated AS (
        UPDATE learn_stats s
           SET total_solved = f.solved, total_correct = f.correct, longest_streak = f.longest,
               last_learned_date = f.last_day, current_streak = f.streak,
               weekly_solved = CASE WHEN f.new_week THEN 0 ELSE s.weekly_solved END,
               weekly_correct = CASE WHEN f.new_week THEN 0 ELSE s.weekly_correct END,
               week_start = CASE WHEN f.new_week THEN :monday ELSE s.week_start END,
               version = s.version + 1, updated_at = now()
          FROM fresh f
         WHERE s.user_id = f.user_id AND (f.corrected OR f.new_week)
        RETURNING f.corrected
    )
    SELECT count(*) FILTER (WHERE corrected) FROM updated
    """
)

# Every value the jobs set, over the whole table: raw and job must leave the same table.
FINGERPRINT = text(
    "SELECT md5(string_agg((user_id, current_streak, longest_streak, last_learned_date, "
    "weekly_solved, weekly_correct, week_start, total_solved, total_correct)::text, ',' "
    "ORDER BY user_id)) FROM learn_stats"
)


async def raw_weekly(engine: AsyncEngine) -> int:
    """One statement over every user: no batches, no version checks."""
    async with engine.begin() as conn:
        corrected = await conn.scalar(
            RAW_WEEKLY, {"yesterday": MONDAY - timedelta(days=1), "monday": MONDAY}
        )
        return int(corrected or 0)


async def median(
    engine: AsyncEngine, runs: int, action: Callable[[], Awaitable[int]]
) -> tuple[float, int, str]:
    """Median seconds, the action's count and the table's fingerprint after it."""
    durations, result = [], 0
    for _ in range(runs):
        await restore(engine)
        seconds, result = await timed(action)
        durations.append(seconds)
    async with engine.connect() as conn:
        fingerprint = str(await conn.scalar(FINGERPRINT))
    return statistics.median(durations), result, fingerprint


async def main(users: int, records: int, runs: int, batch_sizes: list[int]) -> None:
    async with bench_stack() as stack:
        print(f"loading {users:,} users and {records:,} learning records ...", flush=True)
        await load(stack.engine, users, records)
        await restore(stack.engine)
        await raw_daily(stack.engine)  # warm-up
        raw_d, raw_d_count, raw_d_print = await median(
            stack.engine, runs, lambda: raw_daily(stack.engine)
        )
        raw_w, raw_w_count, raw_w_print = await median(
            stack.engine, runs, lambda: raw_weekly(stack.engine)
        )
        print(f"daily: {users:,} users; raw UPDATE {raw_d:.3f} s (median of {runs}), "
              f"{raw_d_count:,} streaks reset, table {raw_d_print}")  # fmt: skip
        print(f"weekly: {records:,} records; raw single statement {raw_w:.3f} s, "
              f"{raw_w_count:,} users corrected, table {raw_w_print}", flush=True)  # fmt: skip
        for batch_size in batch_sizes:
            async with batch_size_worker(stack, batch_size) as (daily_job, weekly_job):
                job_d, job_d_count, job_d_print = await median(stack.engine, runs, daily_job)
                job_w, job_w_count, job_w_print = await median(stack.engine, runs, weekly_job)
            print(f"batches of {batch_size:,} users")
            print(f"  daily  job {job_d:8.3f} s  job / raw = {job_d / raw_d:.2f}x   "
                  f"{job_d_count:,} reset, table {job_d_print}")  # fmt: skip
            print(f"  weekly job {job_w:8.3f} s  job / raw = {job_w / raw_w:.2f}x   "
                  f"{job_w_count:,} corrected, table {job_w_print}", flush=True)  # fmt: skip
            assert (job_d_count, job_d_print) == (raw_d_count, raw_d_print), "daily differs"
            assert (job_w_count, job_w_print) == (raw_w_count, raw_w_print), "weekly differs"
    print("target: job / raw <= 1.5x")


@asynccontextmanager
async def batch_size_worker(
    stack: BenchStack, batch_size: int
) -> AsyncIterator[tuple[Callable[[], Awaitable[int]], Callable[[], Awaitable[int]]]]:
    """A production worker with this batch size on its own task queue, and the two jobs."""
    settings = stack.settings.model_copy(
        update={"learn_stats_batch_size": batch_size, "task_queue": f"bench-{uuid.uuid4().hex}"}
    )
    deps = Dependencies(settings=settings, engine=stack.engine, temporal=stack.client)

    async def daily() -> int:
        result = await stack.client.execute_workflow(
            LearnStatsDaily.run,
            LearnStatsDailyInput(scheduled_time=DAILY_AT),
            id=f"bench-daily-{uuid.uuid4()}",
            task_queue=settings.task_queue,
        )
        return result.reset_streaks

    async def weekly() -> int:
        result = await stack.client.execute_workflow(
            LearnStatsWeekly.run,
            LearnStatsWeeklyInput(scheduled_time=WEEKLY_AT),
            id=f"bench-weekly-{uuid.uuid4()}",
            task_queue=settings.task_queue,
        )
        return result.corrected_users

    async with create_worker(stack.client, deps):
        await daily()  # warm-up
        yield daily, weekly


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, nargs="+", default=[10_000, 50_000])
    args = parser.parse_args()
    exits_without_teardown(asyncio.run)(main(args.users, args.records, args.runs, args.batch_size))
