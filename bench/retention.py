"""retention over 10,000,000 notifications of which 3,000,000 are past their age.

Measured in one run, on the same data restored (and vacuumed) before each measurement:
  raw — one DELETE statement over every expired row (the floor)
  job — the Retention workflow on the dev server with the production worker: batches of
        RETENTION_BATCH_SIZE, each its own transaction with its checkpoint

    .venv/bin/python -m bench.retention [--notifications N] [--expired N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.stack import bench_stack, timed
from learning_platform.commands.process_exit import exits_without_teardown
from learning_platform.jobs.retention.contracts import RetentionInput
from workflows.retention import Retention

SCHEDULED = datetime(2026, 11, 20, 3, 30, tzinfo=UTC)
MAX_AGE = timedelta(days=30)
CUTOFF = SCHEDULED - MAX_AGE
USERS = 1000


async def insert_rows(engine: AsyncEngine, first: int, last: int, total: int, expired: int) -> None:
    """Rows `first..last` of `total`, in time order (ids grow with created_at, as the per-user
    turn makes them); the first `expired` are before the cutoff. The triggers (per-user turn,
    NOTIFY) are off while loading: they cost per row and the benchmark is about deleting."""
    step = MAX_AGE / (total - expired)
    async with engine.begin() as conn:
        await conn.execute(text("ALTER TABLE notifications DISABLE TRIGGER USER"))
        await conn.execute(
            text(
                "INSERT INTO notifications (user_id, kind, payload, dedupe_key, created_at) "
                "SELECT 1 + n % CAST(:users AS int), 'bench', '{}', 'bench-' || n, "
                "CAST(:cutoff AS timestamptz) "
                "+ (n - CAST(:expired AS int)) * CAST(:step AS interval) "
                "FROM generate_series(CAST(:first AS int), CAST(:last AS int)) n"
            ),
            {
                "users": USERS,
                "cutoff": CUTOFF,
                "expired": expired,
                "step": step,
                "first": first,
                "last": last,
            },
        )
        await conn.execute(text("ALTER TABLE notifications ENABLE TRIGGER USER"))


async def load(engine: AsyncEngine, total: int, expired: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE users, notifications RESTART IDENTITY CASCADE"))
        await conn.execute(
            text(
                "INSERT INTO users (email, display_name) "
                "SELECT 'u' || n || '@x', 'u' FROM generate_series(1, :users) n"
            ),
            {"users": USERS},
        )
    await insert_rows(engine, 0, total - 1, total, expired)


async def restore(engine: AsyncEngine, total: int, expired: int) -> int:
    """Put the deleted rows back, then VACUUM ANALYZE; returns the expired count."""
    async with engine.connect() as conn:
        missing = await conn.scalar(
            text("SELECT count(*) FROM notifications WHERE created_at < :c"), {"c": CUTOFF}
        )
    if missing == 0:
        await insert_rows(engine, 0, expired - 1, total, expired)
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE notifications"))
        return int(
            await conn.scalar(
                text("SELECT count(*) FROM notifications WHERE created_at < :c"), {"c": CUTOFF}
            )
            or 0
        )


async def raw_delete(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(
            text("DELETE FROM notifications WHERE created_at < :c"), {"c": CUTOFF}
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


async def main(total: int, expired: int) -> None:
    # The other tables stay empty: each adds one empty pass to the job.
    async with bench_stack() as stack:
        print(f"loading {total:,} notifications, {expired:,} expired ...", flush=True)
        await load(stack.engine, total, expired)
        assert await restore(stack.engine, total, expired) == expired

        async def job() -> int:
            result = await stack.client.execute_workflow(
                Retention.run,
                RetentionInput(scheduled_time=SCHEDULED, notification_max_age_days=30),
                id=f"bench-retention-{uuid.uuid4()}",
                task_queue=stack.settings.task_queue,
            )
            return result.notifications

        raw_seconds, raw_count = await timed(lambda: raw_delete(stack.engine))
        assert await restore(stack.engine, total, expired) == expired
        job_seconds, job_count = await timed(job)
        assert raw_count == job_count == expired, (raw_count, job_count)

    print(f"load average             {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"batch size               {stack.settings.retention_batch_size:,}")
    print(f"raw DELETE               {raw_seconds:8.2f} s")
    print(
        f"job (Temporal workflow)  {job_seconds:8.2f} s   "
        f"job / raw  = {job_seconds / raw_seconds:.2f}x"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=10_000_000)
    parser.add_argument("--expired", type=int, default=3_000_000)
    args = parser.parse_args()
    exits_without_teardown(asyncio.run)(main(args.notifications, args.expired))
