"""question-set-cleanup over 100,000 question sets of which 20,000 are stale.

Measured in one run, on the same data restored (vacuumed, checkpointed) before each
measurement, the four interleaved for --runs runs (the order reversed every other run):
  job         — the QuestionSetCleanup workflow on the dev server, with the production worker:
                keyset batches (CLEANUP_BATCH_SIZE), version bump, and a notification for every
                stale set that has no retry left (a quarter of them here)
  raw         — one UPDATE statement over all stale rows, with no notifications (the floor)
  equivalent  — one statement doing the same UPDATE and the same notifications insert

    .venv/bin/python -m bench.question_set_cleanup [--sets N] [--stale N] [--runs N]
                                                   [--batch-size N]
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.stack import (
    BenchStack,
    bench_stack,
    interleaved,
    run_workflow,
    settled,
    timed,
    without_autovacuum,
)
from learning_platform.commands.process_exit import exits_without_teardown
from learning_platform.core.settings import Settings
from learning_platform.jobs.question_sets import queries as question_sets
from learning_platform.jobs.question_sets.contracts import QuestionSetCleanupInput
from learning_platform.jobs.question_sets.models import MAX_QUESTION_SET_RETRIES
from workflows.question_sets import QuestionSetCleanup

SCHEDULED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CUTOFF = SCHEDULED - timedelta(minutes=60)
STALE_AT = CUTOFF - timedelta(minutes=30)


async def load(engine: AsyncEngine, sets: int, stale: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE users, sources RESTART IDENTITY CASCADE"))
        await conn.execute(text("INSERT INTO users (email, display_name) VALUES ('b@x', 'b')"))
        await conn.execute(
            text(
                "INSERT INTO sources (user_id, title, storage_key, content_type, size_bytes) "
                "VALUES (1, 'notes', 'notes.txt', 'text/plain', 1)"
            )
        )
        # Stale rows spread through the table, each requested at its own time (so an index
        # over requested_at holds them in a different order than the table); the rest is a
        # production-like mix of fresh pending, completed and failed sets.
        await conn.execute(
            text(
                "INSERT INTO question_sets (user_id, source_id, title, status, retry_count, "
                "attempt, requested_at) "
                "SELECT 1, 1, 'Quiz ' || n, "
                "CASE WHEN n % :every = 0 AND n / :every <= :stale THEN 'pending' "
                "     ELSE (ARRAY['pending', 'completed', 'completed', 'failed'])[1 + n % 4] END, "
                "n % 4, 1 + n % 4, "
                "CASE WHEN n % :every = 0 AND n / :every <= :stale "
                "THEN CAST(:old AS timestamptz) - n * interval '1 second' "
                "ELSE CAST(:fresh AS timestamptz) END "
                "FROM generate_series(1, :n) n"
            ),
            {
                "n": sets,
                "stale": stale,
                "every": sets // stale,
                "old": STALE_AT,
                "fresh": CUTOFF + timedelta(minutes=10),
            },
        )


async def restore(engine: AsyncEngine) -> int:
    """Undo a cleanup: the sets it failed are pending again, its notifications gone; VACUUM."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE question_sets SET status = 'pending', failure_reason = NULL "
                "WHERE requested_at < :cutoff"
            ),
            {"cutoff": CUTOFF},
        )
        await conn.execute(text("TRUNCATE notifications"))
    await settled(engine, "question_sets", "notifications")
    async with engine.connect() as conn:
        stale = await conn.scalar(
            text(
                "SELECT count(*) FROM question_sets WHERE status = 'pending' AND requested_at < :c"
            ),
            {"c": CUTOFF},
        )
        return int(stale or 0)


REASON = "generation timed out (pending for over 60 minutes)"
_SET_FAILED = (
    "UPDATE question_sets SET status = 'failed', failure_reason = :reason, retryable = true, "
    "version = version + 1, updated_at = now() WHERE status = 'pending' AND requested_at < :c"
)


async def raw_update(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(text(_SET_FAILED), {"c": CUTOFF, "reason": REASON})
        return int(result.rowcount)  # type: ignore[attr-defined]


async def equivalent_raw_sql(engine: AsyncEngine) -> int:
    """The raw UPDATE plus the notifications the job writes, in one statement."""
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                f"WITH failed AS ({_SET_FAILED} RETURNING id, user_id, attempt, retry_count, "
                "title), notified AS (INSERT INTO notifications (user_id, kind, payload, "
                "dedupe_key) SELECT user_id, 'question_set.failed', jsonb_build_object("
                "'question_set_id', id, 'title', title, 'reason', :reason), "
                "'question-set-' || id || '-attempt-' || attempt || '-failed' FROM failed "
                f"WHERE retry_count >= {MAX_QUESTION_SET_RETRIES} "
                "ON CONFLICT (dedupe_key) DO NOTHING) SELECT count(*) FROM failed"
            ),
            {"c": CUTOFF, "reason": REASON},
        )
        return int(result.scalar_one())


async def batches_alone(engine: AsyncEngine, batch_size: int) -> int:
    """The job's SQL (`question_sets.queries.fail_stale_batch`) without Temporal."""
    total, position = 0, None
    while True:
        async with engine.begin() as conn:
            batch = await question_sets.fail_stale_batch(
                conn, after=position, cutoff=CUTOFF, reason=REASON, limit=batch_size
            )
        total, position = total + batch.changed, batch.position
        if batch.last_batch:
            return total


async def run_job(stack: BenchStack) -> int:
    """The QuestionSetCleanup workflow through the dev server and the stack's worker."""
    input = QuestionSetCleanupInput(scheduled_time=SCHEDULED)
    return (await run_workflow(stack, QuestionSetCleanup.run, input)).failed_sets


async def main(sets: int, stale: int, runs: int, batch_size: int) -> None:
    async with bench_stack(cleanup_batch_size=batch_size) as stack:
        print(f"loading {sets:,} question sets, {stale:,} stale ...", flush=True)
        await load(stack.engine, sets, stale)

        async def job() -> int:
            return await run_job(stack)

        await without_autovacuum(stack.engine, "question_sets", "notifications")
        assert await restore(stack.engine) == stale
        await job()  # warm-up: worker, connection pool, plans, the table's restored layout
        measured = await interleaved(
            runs,
            lambda: restore(stack.engine),
            {
                "raw": lambda: raw_update(stack.engine),
                "equivalent": lambda: equivalent_raw_sql(stack.engine),
                "batches": lambda: batches_alone(stack.engine, batch_size),
                "job": job,
            },
            stale,
        )
        assert await restore(stack.engine) == stale
        await job()
        async with stack.engine.connect() as conn:
            notified = await conn.scalar(text("SELECT count(*) FROM notifications"))
        # A run that finds nothing: what a run costs before its first row.
        empty = sorted([(await timed(job))[0] for _ in range(5)])

    print(f"{sets:,} sets, {stale:,} stale, batch size {batch_size:,}, {runs} runs")
    print(f"load average             {measured.load_before} before, {measured.load_after} after")
    print(f"notifications written    {notified:,} (sets with no retry left)")
    for name in measured.seconds:
        print(measured.report(name))
    print(
        f"job with nothing to do   {empty[len(empty) // 2]:8.3f} s   (median of 5: the fixed cost)"
    )
    print(measured.ratio_report("job", "raw", target=1.3))
    print(measured.ratio_report("job", "equivalent"))
    print(measured.ratio_report("batches", "equivalent"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=100_000)
    parser.add_argument("--stale", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=Settings().cleanup_batch_size)
    args = parser.parse_args()
    exits_without_teardown(asyncio.run)(main(args.sets, args.stale, args.runs, args.batch_size))
