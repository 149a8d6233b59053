"""The real stack for a benchmark: embedded PostgreSQL (or BENCH_DATABASE_URL) and a Temporal
dev server with a worker wired exactly as in production."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.registry import Dependencies
from learning_platform.core.database import create_engine, start_embedded_postgres
from learning_platform.core.settings import Settings
from learning_platform.dev.embedded_temporal import search_attribute_args, temporal_cli_path
from learning_platform.migrations import upgrade
from learning_platform.temporal.payload_codec import data_converter
from worker import create_worker

T = TypeVar("T")


@dataclass
class BenchStack:
    database_url: str
    engine: AsyncEngine
    client: Client
    settings: Settings


def database_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url
    return start_embedded_postgres(Path(tempfile.mkdtemp(prefix="bench-pg-")), at_exit="delete")


@asynccontextmanager
async def bench_stack(**setting_overrides: Any) -> AsyncIterator[BenchStack]:
    url = database_url()
    await asyncio.to_thread(upgrade, url)
    settings = Settings(
        database_url=url,
        task_queue=f"bench-{uuid.uuid4().hex[:8]}",
        metrics_port=0,
        **setting_overrides,
    )
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        dev_server_extra_args=search_attribute_args(),
        data_converter=data_converter(settings),
    )
    engine = create_engine(url, pool_size=setting_overrides.get("database_pool_size", 4))
    try:
        deps = Dependencies(settings=settings, engine=engine, temporal=env.client)
        async with create_worker(env.client, deps):
            yield BenchStack(url, engine, env.client, settings)
    finally:
        await engine.dispose()
        await env.shutdown()


async def run_workflow(stack: BenchStack, run: Callable[[Any, Any], Awaitable[T]], arg: Any) -> T:
    """A job's workflow through the dev server and the stack's worker (as a schedule starts it)."""
    return await stack.client.execute_workflow(
        run, arg, id=f"bench-{uuid.uuid4()}", task_queue=stack.settings.task_queue
    )


async def timed(action: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    started = time.perf_counter()
    result = await action()
    return time.perf_counter() - started, result


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def autocommit(engine: AsyncEngine, *statements: str) -> None:
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        for statement in statements:
            await conn.execute(text(statement))


async def without_autovacuum(engine: AsyncEngine, *tables: str) -> None:
    """The benchmark vacuums between measurements itself: autovacuum starting in the middle of
    one (a batch job reports its dead rows batch by batch, one UPDATE only at its commit) would
    charge one side for work the other leaves until after its clock stopped."""
    await autocommit(
        engine, *(f"ALTER TABLE {table} SET (autovacuum_enabled = off)" for table in tables)
    )


async def settled(engine: AsyncEngine, *tables: str) -> None:
    """The same physical state before every measurement, whatever the one before did: each
    table rewritten in primary-key order (CLUSTER), vacuumed (visibility map, free space map),
    analyzed, then a CHECKPOINT, so each measurement pays the same full-page writes.

    Restoring the rows' values alone is not enough: an UPDATE puts the new row versions where
    it finds room, so a table restored after the raw UPDATE had its changed rows elsewhere than
    one restored after the job, and the next measurement's cost depended on which came before
    (at 1 M sessions the job measured 1.2-2.1x the raw UPDATE after a raw run, 0.8-1.4x after
    a job run)."""
    async with engine.connect() as conn:
        keys = {
            table: await conn.scalar(
                text(
                    "SELECT indexrelid::regclass::text FROM pg_index "
                    "WHERE indrelid = CAST(:table AS regclass) AND indisprimary"
                ),
                {"table": table},
            )
            for table in tables
        }
    await autocommit(
        engine,
        *(f"CLUSTER {table} USING {key}" for table, key in keys.items()),
        f"VACUUM ANALYZE {', '.join(tables)}",
        "CHECKPOINT",
    )


Measurement = Callable[[], Awaitable[int]]


@dataclass
class Runs:
    """Seconds of each measurement, one entry per run, and the load average around them."""

    seconds: dict[str, list[float]]
    load_before: str
    load_after: str

    def ratios(self, numerator: str, denominator: str) -> list[float]:
        return [
            a / b for a, b in zip(self.seconds[numerator], self.seconds[denominator], strict=True)
        ]

    def report(self, name: str) -> str:
        values = self.seconds[name]
        listed = "  ".join(f"{x:7.3f}" for x in values)
        return f"{name:<26} {listed}   median {statistics.median(values):7.3f} s"

    def ratio_report(self, numerator: str, denominator: str, target: float | None = None) -> str:
        ratios = self.ratios(numerator, denominator)
        listed = "  ".join(f"{x:6.2f}x" for x in ratios)
        worst = max(ratios)
        verdict = (
            "" if target is None else f" ({'meets' if worst <= target else 'MISSES'} <= {target}x)"
        )
        return (
            f"{numerator} / {denominator}: {listed}   worst {worst:.2f}x, "
            f"median {statistics.median(ratios):.2f}x{verdict}"
        )


async def interleaved(
    runs: int,
    restore: Callable[[], Awaitable[int]],
    measurements: dict[str, Measurement],
    expected: int,
) -> Runs:
    """Each measurement once per run, on the data `restore` puts back before every one (it
    returns how many rows the measurement must change); the order alternates run by run (a, b,
    then b, a), so a drift of the machine's load or of the table's layout favours neither."""
    seconds: dict[str, list[float]] = {name: [] for name in measurements}
    load_before = load_average()
    for run in range(runs):
        names = list(measurements) if run % 2 == 0 else list(reversed(measurements))
        for name in names:
            assert await restore() == expected
            took, changed = await timed(measurements[name])
            assert changed == expected, (name, changed, expected)
            seconds[name].append(took)
        print(
            f"run {run + 1}: " + ", ".join(f"{n} {seconds[n][-1]:.3f} s" for n in measurements),
            flush=True,
        )
    return Runs(seconds, load_before, load_average())
