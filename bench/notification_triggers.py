"""What the triggers on `notifications` cost a bulk insert: 5,000 rows in one INSERT … SELECT
(as the question-set cleanup writes them), with the triggers of migration 0009 (0001's: per-row
turn and NOTIFY), those of head, and none.

Three databases on one PostgreSQL server, migrated to 0009, to head, and to head with the
table's own triggers disabled (the foreign key's stay), measured interleaved (the order
reversed every other run), each insert in its own transaction on an emptied, vacuumed table,
the clock around INSERT and COMMIT (the NOTIFYs are queued at commit). Besides the wall time,
the server process's CPU time (/proc/PID/schedstat), which the machine's load disturbs less.

    .venv/bin/python -m bench.notification_triggers [--rows N] [--users N] [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from alembic import command
from sqlalchemy import make_url

from bench.stack import database_url, load_average
from learning_platform.core.database import libpq_url
from learning_platform.migrations import alembic_config, upgrade

BEFORE = "0009"  # the last revision with 0001's triggers
NONE = "no triggers"

# One statement, rows ordered by user as the job inserts them (its locks in one order).
INSERT = """
    INSERT INTO notifications (user_id, kind, payload, dedupe_key)
    SELECT 1 + n % $2, 'question_set.failed',
           jsonb_build_object('question_set_id', n, 'title', 'Quiz ' || n,
                              'reason', 'generation timed out (pending for over 60 minutes)'),
           'question-set-' || n || '-attempt-4-failed'
      FROM generate_series(1, $1) AS n
     ORDER BY 1 + n % $2
"""


@dataclass
class Target:
    name: str
    connection: asyncpg.Connection
    server_pid: int
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def server_cpu_seconds(pid: int) -> float | None:
    """On-CPU time of a server process, if it runs on this machine (the embedded server; a
    BENCH_DATABASE_URL server may be elsewhere, and its pid some local process's)."""
    if os.environ.get("BENCH_DATABASE_URL"):
        return None
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    except OSError:
        return None


def database_names() -> list[str]:
    """Names of the benchmark's own, so a BENCH_DATABASE_URL server loses nothing of its own."""
    run = uuid.uuid4().hex[:8]
    return [f"bench_triggers_{run}_{n}" for n in range(3)]


def database_at(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@asynccontextmanager
async def targets(url: str, users: int) -> AsyncIterator[list[Target]]:
    """The three databases, each with `users` users and an open connection."""
    admin = await asyncpg.connect(libpq_url(url))
    names = database_names()
    urls = {
        target: database_at(url, name)
        for target, name in zip((BEFORE, "head", NONE), names, strict=True)
    }
    opened: list[Target] = []
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
        await asyncio.to_thread(command.upgrade, alembic_config(urls[BEFORE]), BEFORE)
        await asyncio.to_thread(upgrade, urls["head"])
        await asyncio.to_thread(upgrade, urls[NONE])
        for name, target_url in urls.items():
            connection = await asyncpg.connect(libpq_url(target_url))
            opened.append(
                Target(name, connection, await connection.fetchval("SELECT pg_backend_pid()"))
            )
            await connection.execute(
                "INSERT INTO users (email, display_name) "
                "SELECT 'user' || n || '@example.com', 'user' FROM generate_series(1, $1) n",
                users,
            )
            await connection.execute("ALTER TABLE notifications SET (autovacuum_enabled = off)")
            if name == NONE:
                # The table's own triggers; the foreign key's (internal) triggers stay.
                await connection.execute("ALTER TABLE notifications DISABLE TRIGGER USER")
        yield opened
    finally:
        for target in opened:
            await target.connection.close()
        for name in names:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def measure(target: Target, rows: int, users: int) -> None:
    await target.connection.execute("TRUNCATE notifications")
    await target.connection.execute("VACUUM notifications")
    cpu_before = server_cpu_seconds(target.server_pid)
    started = time.perf_counter()
    async with target.connection.transaction():
        await target.connection.execute(INSERT, rows, users)
    target.wall.append(time.perf_counter() - started)
    cpu_after = server_cpu_seconds(target.server_pid)
    if cpu_before is not None and cpu_after is not None:
        target.cpu.append(cpu_after - cpu_before)


def report(measured: list[Target]) -> None:
    for metric in ("wall", "cpu"):
        series = {t.name: getattr(t, metric) for t in measured}
        if not all(series.values()):
            continue  # a server on another machine: no CPU figure
        medians = {name: statistics.median(values) for name, values in series.items()}
        for name, values in series.items():
            listed = "  ".join(f"{v * 1000:6.1f}" for v in values)
            print(f"{metric:<4} {name:<12} {listed}   median {medians[name] * 1000:6.1f} ms")
        cost = {name: (medians[name] - medians[NONE]) * 1000 for name in (BEFORE, "head")}
        print(
            f"{metric}: the triggers cost {cost[BEFORE]:.1f} ms at {BEFORE}, {cost['head']:.1f} ms "
            f"at head (median minus {NONE}); head / {BEFORE}: "
            f"{medians['head'] / medians[BEFORE]:.2f}x"
        )


async def main(rows: int, users: int, runs: int) -> None:
    url = database_url()
    async with targets(url, users) as measured:
        load_before = load_average()
        for target in measured:
            await measure(target, rows, users)  # warm-up: plans, the trigger functions' cache
            target.wall.clear()
            target.cpu.clear()
        for run in range(runs):
            for target in measured if run % 2 == 0 else list(reversed(measured)):
                await measure(target, rows, users)
        load_after = load_average()
    print(f"{rows:,} rows in one INSERT over {users:,} user(s), {runs} runs")
    print(f"load average  {load_before} before, {load_after} after")
    report(measured)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.users, args.runs))
