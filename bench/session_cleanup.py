"""cleanup-stale-sessions over 1,000,000 sessions of which 300,000 are stale.

Measured in one run, on the same data restored (vacuumed, checkpointed) before each
measurement, raw and job interleaved for --runs runs (raw, job, then job, raw, ...):
  job   — the CleanupStaleSessions workflow on the dev server, with the production worker
  raw   — one UPDATE statement over all stale rows (the floor)
  seed  — the Go document's approach: select every stale row, then one UPDATE per row,
          each committed on its own; timed on a sample and extrapolated (once)

    .venv/bin/python -m bench.session_cleanup [--sessions N] [--stale N] [--runs N]
                                              [--seed-sample N (0: skip)] [--batch-size N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
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
from learning_platform.jobs.browsing_sessions.contracts import CleanupStaleSessionsInput
from workflows.browsing_sessions import CleanupStaleSessions

SCHEDULED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CUTOFF = SCHEDULED - timedelta(hours=24)


async def load(engine: AsyncEngine, sessions: int, stale: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE users, sessions RESTART IDENTITY CASCADE"))
        await conn.execute(text("INSERT INTO users (email, display_name) VALUES ('b@x', 'b')"))
        # Stale rows are spread through the table, as they would be in production.
        await conn.execute(
            text(
                "INSERT INTO sessions (user_id, status, updated_at) "
                "SELECT 1, CASE WHEN n % 2 = 0 THEN 'recording' ELSE 'paused' END, "
                "CASE WHEN n % :every = 0 AND n / :every <= :stale "
                "THEN CAST(:old AS timestamptz) ELSE CAST(:fresh AS timestamptz) END "
                "FROM generate_series(1, :n) n"
            ),
            {
                "n": sessions,
                "stale": stale,
                "every": sessions // stale,
                "old": CUTOFF - timedelta(hours=1),
                "fresh": CUTOFF + timedelta(hours=1),
            },
        )


async def restore(engine: AsyncEngine) -> int:
    """Undo a cleanup: the failed rows become the stale active rows they were (ids are the
    load's n, so each gets its status back), then VACUUM ANALYZE and CHECKPOINT."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE sessions SET failure_reason = NULL, updated_at = :old, "
                "status = CASE WHEN id % 2 = 0 THEN 'recording' ELSE 'paused' END "
                "WHERE status = 'failed'"
            ),
            {"old": CUTOFF - timedelta(hours=1)},
        )
    await settled(engine, "sessions")
    async with engine.connect() as conn:
        return int(
            await conn.scalar(
                text(
                    "SELECT count(*) FROM sessions "
                    "WHERE status IN ('recording', 'paused') AND updated_at < :c"
                ),
                {"c": CUTOFF},
            )
            or 0
        )


async def raw_update(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(
            text(
                "UPDATE sessions SET status = 'failed', failure_reason = 'stale', "
                "updated_at = now() WHERE status IN ('recording', 'paused') AND updated_at < :c"
            ),
            {"c": CUTOFF},
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


async def seed_approach(engine: AsyncEngine, sample: int) -> tuple[float, int]:
    """Seconds the per-row approach would take for all stale rows, from a timed sample."""
    select_seconds, ids = await timed(lambda: _stale_ids(engine))
    per_row_seconds, _ = await timed(lambda: _update_one_by_one(engine, ids[:sample]))
    return select_seconds + per_row_seconds * len(ids) / min(sample, len(ids)), len(ids)


async def _stale_ids(engine: AsyncEngine) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id FROM sessions "
                "WHERE status IN ('recording', 'paused') AND updated_at < :c"
            ),
            {"c": CUTOFF},
        )
        return [row.id for row in rows]


async def _update_one_by_one(engine: AsyncEngine, ids: list[int]) -> None:
    for session_id in ids:
        async with engine.begin() as conn:
            await conn.execute(
                text("UPDATE sessions SET status = 'failed', updated_at = now() WHERE id = :id"),
                {"id": session_id},
            )


async def run_job(stack: BenchStack) -> int:
    """The CleanupStaleSessions workflow through the dev server and the stack's worker."""
    input = CleanupStaleSessionsInput(scheduled_time=SCHEDULED)
    return (await run_workflow(stack, CleanupStaleSessions.run, input)).failed_sessions


async def main(sessions: int, stale: int, runs: int, seed_sample: int, batch_size: int) -> None:
    async with bench_stack(cleanup_batch_size=batch_size) as stack:
        print(f"loading {sessions:,} sessions, {stale:,} stale ...", flush=True)
        await load(stack.engine, sessions, stale)
        await without_autovacuum(stack.engine, "sessions")

        async def job() -> int:
            return await run_job(stack)

        # Warm-up: worker, pool, plans, and the table once through a cleanup and its restore,
        # the state every measurement then starts from.
        assert await restore(stack.engine) == stale
        assert await job() == stale
        measured = await interleaved(
            runs,
            lambda: restore(stack.engine),
            {"raw": lambda: raw_update(stack.engine), "job": job},
            stale,
        )
        if seed_sample:
            await restore(stack.engine)
            seed_seconds, seed_count = await seed_approach(stack.engine, seed_sample)
            assert seed_count == stale, seed_count

    print(
        f"{sessions:,} sessions, {stale:,} stale, batch size {stack.settings.cleanup_batch_size:,}"
    )
    print(f"load average             {measured.load_before} before, {measured.load_after} after")
    print(measured.report("raw"))
    print(measured.report("job"))
    print(measured.ratio_report("job", "raw", target=1.3))
    if seed_sample:
        job_seconds = statistics.median(measured.seconds["job"])
        print(
            f"seed approach (extrap.)  {seed_seconds:8.2f} s   "
            f"seed / job = {seed_seconds / job_seconds:.1f}x (target >= 50x; "
            f"per-row rate from a {seed_sample:,}-row sample)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--stale", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed-sample", type=int, default=3_000)
    parser.add_argument("--batch-size", type=int, default=Settings().cleanup_batch_size)
    args = parser.parse_args()
    exits_without_teardown(asyncio.run)(
        main(args.sessions, args.stale, args.runs, args.seed_sample, args.batch_size)
    )
