"""retention over 10,000,000 notifications of which 3,000,000 are past their age.

Measured in one run, on the same data restored (vacuumed, checkpointed) before each
measurement, raw and job interleaved for --runs runs (3: each run moves 3 M rows twice):
  raw — one DELETE statement over every expired row (the floor)
  job — the Retention workflow on the dev server with the production worker: batches of
        RETENTION_BATCH_SIZE, each its own transaction with its checkpoint

    .venv/bin/python -m bench.retention [--notifications N] [--expired N] [--runs N]
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
    without_autovacuum,
)
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
    await settled(engine, "notifications")
    async with engine.connect() as conn:
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


async def run_job(stack: BenchStack) -> int:
    """The Retention workflow through the dev server and the stack's worker; the
    notifications it deleted (the other tables are empty: each adds one empty pass)."""
    input = RetentionInput(scheduled_time=SCHEDULED, notification_max_age_days=30)
    return (await run_workflow(stack, Retention.run, input)).notifications


async def main(total: int, expired: int, runs: int) -> None:
    async with bench_stack() as stack:
        print(f"loading {total:,} notifications, {expired:,} expired ...", flush=True)
        await load(stack.engine, total, expired)
        await without_autovacuum(stack.engine, "notifications")
        assert await restore(stack.engine, total, expired) == expired
        assert await run_job(stack) == expired  # warm-up, and the restored layout
        measured = await interleaved(
            runs,
            lambda: restore(stack.engine, total, expired),
            {"raw": lambda: raw_delete(stack.engine), "job": lambda: run_job(stack)},
            expired,
        )

    print(f"{total:,} notifications, {expired:,} expired, batch size "
          f"{stack.settings.retention_batch_size:,}")  # fmt: skip
    print(f"load average             {measured.load_before} before, {measured.load_after} after")
    print(measured.report("raw"))
    print(measured.report("job"))
    print(measured.ratio_report("job", "raw"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=10_000_000)
    parser.add_argument("--expired", type=int, default=3_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    exits_without_teardown(asyncio.run)(main(args.notifications, args.expired, args.runs))
