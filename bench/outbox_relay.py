"""Outbox relay with the learning-stats handler: commit → handled latency (p50/p99) at a steady
--rate events/s, then sustained throughput draining a --backlog of events; the production
relay workflow and worker throughout. The reference is the relay's bare claim-and-delete loop
(no handler), measured on the same backlog in the same run.

    .venv/bin/python -m bench.outbox_relay [--rate N] [--seconds N] [--backlog N] [--users N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.stack import bench_stack, timed
from learning_platform.commands.process_exit import exits_without_teardown
from learning_platform.jobs.learn_stats.queries import record_learning
from learning_platform.jobs.outbox_relay.contracts import OutboxRelayInput
from learning_platform.jobs.outbox_relay.queries import RetryPolicy, relay_batch
from workflows.outbox_relay import OutboxRelay

# Bench-only: when each event left the outbox (the relay's DELETE, just before its commit).
DELIVERY_LOG = (
    "CREATE TABLE bench_delivered (id bigint, at timestamptz)",
    """CREATE FUNCTION bench_log_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN INSERT INTO bench_delivered VALUES (OLD.id, clock_timestamp()); RETURN NULL; END $$""",
    """CREATE TRIGGER bench_log_delivery AFTER DELETE ON outbox_events
       FOR EACH ROW EXECUTE FUNCTION bench_log_delivery()""",
)


async def setup(engine: AsyncEngine, users: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO users (email, display_name) "
                "SELECT 'u' || n, 'u' FROM generate_series(1, :n) n"
            ),
            {"n": users},
        )
        for statement in DELIVERY_LOG:
            await conn.execute(text(statement))


async def produce(engine: AsyncEngine, rate: int, seconds: float, users: int) -> dict[int, float]:
    """`rate` single-record transactions a second from 5 producers; event id → commit time."""
    committed: dict[int, float] = {}
    producers = 5
    interval = producers / rate

    async def producer(index: int) -> None:
        start = time.time()
        for n in range(int(seconds / interval)):
            await asyncio.sleep(max(0, start + n * interval - time.time()))
            async with engine.begin() as conn:
                await record_learning(
                    conn,
                    user_id=1 + (n * producers + index) % users,
                    question_id=n,
                    solved_at=datetime.now(UTC),
                    correct=True,
                )
                event_id = await conn.scalar(text("SELECT currval('outbox_events_id_seq')"))
            committed[int(event_id or 0)] = time.time()

    await asyncio.gather(*(producer(i) for i in range(producers)))
    return committed


async def wait_until_empty(engine: AsyncEngine) -> None:
    while True:
        async with engine.connect() as conn:
            if not await conn.scalar(text("SELECT EXISTS (SELECT 1 FROM outbox_events)")):
                return
        await asyncio.sleep(0.02)


async def latencies(engine: AsyncEngine, committed: dict[int, float]) -> list[float]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, extract(epoch FROM at) AS at FROM bench_delivered WHERE id = ANY(:i)"),
            {"i": list(committed)},
        )
        return sorted(float(row.at) - committed[row.id] for row in rows)


async def load_backlog(engine: AsyncEngine, events: int, users: int) -> float:
    """Records and their events in one transaction; returns its commit time."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "WITH r AS ("
                "INSERT INTO learning_records (user_id, question_id, solved_at, correct) "
                "SELECT 1 + n % :u, n, now() - (n % 5) * interval '1 day', n % 3 <> 0 "
                "FROM generate_series(1, :n) n RETURNING id, user_id) "
                "INSERT INTO outbox_events (aggregate_type, aggregate_id, event_type, payload) "
                "SELECT 'user', user_id::text, 'learning.recorded', "
                "jsonb_build_object('learning_record_id', id) FROM r ORDER BY id"
            ),
            {"n": events, "u": users},
        )
    return time.perf_counter()


async def bare_drain(engine: AsyncEngine, batch_size: int) -> None:
    """The relay loop with a no-op handler: claim, delete, commit."""

    async def nothing(*_: object) -> None:
        return None

    retry = RetryPolicy(max_attempts=5, base_seconds=1, max_seconds=60)
    while (await relay_batch(engine, {"learning.recorded": nothing}, limit=batch_size,
                             retry=retry)).claimed:  # fmt: skip
        pass


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


async def main(rate: int, seconds: float, backlog: int, users: int, batch_size: int) -> None:
    async with bench_stack(outbox_batch_size=batch_size, database_pool_size=8) as stack:
        engine = stack.engine
        await setup(engine, users)
        relay = await stack.client.start_workflow(
            OutboxRelay.run,
            OutboxRelayInput(drain_seconds=600),
            id=f"bench-relay-{uuid.uuid4()}",
            task_queue=stack.settings.task_queue,
        )
        await produce(engine, rate, 2, users)  # warm-up
        await wait_until_empty(engine)
        committed = await produce(engine, rate, seconds, users)
        await wait_until_empty(engine)
        observed = await latencies(engine, committed)

        committed_at = await load_backlog(engine, backlog, users)
        await wait_until_empty(engine)
        relay_seconds = time.perf_counter() - committed_at
        await relay.terminate("bench over")

        await load_backlog(engine, backlog, users)
        bare_seconds, _ = await timed(lambda: bare_drain(engine, batch_size))

    print(f"latency at {rate} events/s for {seconds:.0f} s ({len(observed):,} events, "
          f"5 producers, one transaction per event)")  # fmt: skip
    print(f"  commit -> handled  p50 {percentile(observed, 0.5) * 1000:6.1f} ms   "
          f"p99 {percentile(observed, 0.99) * 1000:6.1f} ms   max {observed[-1] * 1000:6.1f} ms "
          f"(target p99 <= 250 ms)")  # fmt: skip
    print(f"  mean {statistics.mean(observed) * 1000:.1f} ms")
    print(f"sustained: {backlog:,} events over {users:,} users, batch {batch_size}")
    print(f"  relay + learning-stats handler  {backlog / relay_seconds:8,.0f} events/s "
          f"(target >= 5,000)")  # fmt: skip
    print(f"  bare claim-and-delete loop      {backlog / bare_seconds:8,.0f} events/s   "
          f"relay / bare time = {relay_seconds / bare_seconds:.2f}x")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    exits_without_teardown(asyncio.run)(
        main(args.rate, args.seconds, args.backlog, args.users, args.batch_size)
    )
