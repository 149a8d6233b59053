"""The relay's batch loop alone (no Temporal): `relay_batch` on one connection over a --backlog of
learning events, with the learning-stats handler and with a no-op handler (the bare
claim-and-delete loop), --rounds interleaved rounds on the same database; prints each round and
the best of each. Runs against any checkout whose `relay_batch` takes an engine (older code:
one check-out per batch), so before/after is the same script on two trees:

    .venv/bin/python -m bench.outbox_relay_loop [--rounds 4] [--backlog 100000] [--users 10000]
    PYTHONPATH=/path/to/old/tree .venv/bin/python /path/to/this/file ...   # the old code
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.outbox_handlers import learning_recorded_handler
from bench.outbox_relay import add_users, load_backlog
from bench.stack import database_url
from learning_platform.commands.process_exit import exits_without_teardown
from learning_platform.core.database import create_engine
from learning_platform.jobs.learn_stats.queries import LEARNING_RECORDED
from learning_platform.jobs.outbox_relay.queries import RetryPolicy, relay_batch
from learning_platform.migrations import upgrade
from worker import run_event_loop


async def nothing(*_: object) -> None:
    return None


async def drain(engine: AsyncEngine, handlers: Mapping[str, Any], batch_size: int) -> None:
    retry = RetryPolicy(max_attempts=5, base_seconds=1, max_seconds=60)
    if "partition" not in inspect.signature(relay_batch).parameters:  # before issue 16
        while (await relay_batch(engine, handlers, limit=batch_size, retry=retry)).claimed:
            pass
        return
    async with engine.connect() as conn:
        while (await relay_batch(conn, handlers, limit=batch_size, retry=retry)).claimed:
            pass


async def main(rounds: int, backlog: int, users: int, batch_size: int) -> None:
    url = database_url()
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url, pool_size=2)
    async with engine.begin() as conn:
        await add_users(conn, users)
    variants = {
        "bare": {LEARNING_RECORDED: nothing},
        "learning-stats": {LEARNING_RECORDED: learning_recorded_handler("Asia/Seoul")},
    }
    best = dict.fromkeys(variants, 0.0)
    for n in range(rounds):
        for name, handlers in variants.items():
            await load_backlog(engine, backlog, users)
            async with engine.begin() as conn:
                await conn.execute(text("ANALYZE outbox_events"))
            started = time.perf_counter()
            await drain(engine, handlers, batch_size)
            rate = backlog / (time.perf_counter() - started)
            best[name] = max(best[name], rate)
            print(f"round {n + 1} {name:15s} {rate:9,.0f} events/s", flush=True)
    await engine.dispose()
    print("best: " + ", ".join(f"{name} {rate:,.0f} events/s" for name, rate in best.items()))
    print(f"handler / bare time = {best['bare'] / best['learning-stats']:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--loop",
        choices=("worker", "asyncio"),
        default="worker",
        help="the worker's event loop (uvloop where installed, as deployed) or asyncio's",
    )
    args = parser.parse_args()
    exits_without_teardown(run_event_loop if args.loop == "worker" else asyncio.run)(
        main(args.rounds, args.backlog, args.users, args.batch_size)
    )
