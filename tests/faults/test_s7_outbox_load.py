"""Scenario 7: learning events offered to the outbox at FAULTS_LOAD_RATE per second (default
10,000, the issue's figure) for FAULTS_LOAD_SECONDS (default 60), delivered by the relay in a
worker process to the learn-stats handler. Reports the rate actually reached, the backlog and
its drain, the delivery latency (p99, from the worker's histogram) and the worker's memory;
asserts that the backlog drains and every event is counted exactly once."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import httpx
import psutil
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from learning_platform.core.settings import Settings
from learning_platform.jobs.outbox_relay.contracts import OutboxRelayInput
from tests.faults.report import FaultReport
from tests.faults.world import execute, scalar
from tests.learning_helpers import wait_for
from tests.worker_process import running_worker

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

RATE = int(os.environ.get("FAULTS_LOAD_RATE", "10000"))
SECONDS = float(os.environ.get("FAULTS_LOAD_SECONDS", "60"))
TICK = 0.1
USERS = 1000

_OFFER = """
    WITH records AS (
        INSERT INTO learning_records (user_id, question_id, solved_at, correct)
        SELECT 1 + (n % :users), n, now(), n % 3 <> 0 FROM generate_series(1, :n) n
        RETURNING id, user_id)
    INSERT INTO outbox_events (aggregate_type, aggregate_id, event_type, payload)
    SELECT 'user', user_id::text, 'learning.recorded', jsonb_build_object('learning_record_id', id)
      FROM records ORDER BY id
"""


async def offer(engine: AsyncEngine) -> tuple[int, float]:
    """Insert events (record + event, one transaction per tick) at RATE for SECONDS."""
    per_tick = max(1, int(RATE * TICK))
    offered, started = 0, time.monotonic()
    while (elapsed := time.monotonic() - started) < SECONDS:
        await execute(engine, _OFFER, users=USERS, n=per_tick)
        offered += per_tick
        behind = offered / RATE - (time.monotonic() - started)
        if behind > 0:
            await asyncio.sleep(behind)
    return offered, time.monotonic() - started if elapsed else SECONDS


def p99_upper_bound(metrics_text: str) -> str:
    buckets: list[tuple[float, float]] = []
    for line in metrics_text.splitlines():
        if line.startswith("outbox_delivery_latency_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0
    for bound, count in buckets:
        if total and count >= 0.99 * total:
            return f"<= {bound:g} s ({int(total)} deliveries)"
    return "no deliveries"


async def test_s7_outbox_load_backlog_drains(
    engine: AsyncEngine, client: Client, settings: Settings, fault_report: FaultReport
) -> None:
    await execute(
        engine,
        "INSERT INTO users (email, display_name) SELECT 'u' || n || '@x', 'u' "
        "FROM generate_series(1, :n) n",
        n=USERS,
    )
    with running_worker(settings) as worker:
        process = psutil.Process(worker.process.pid)
        await client.start_workflow(
            "OutboxRelay",
            OutboxRelayInput(drain_seconds=600),
            id=f"relay-{uuid.uuid4().hex[:6]}",
            task_queue=settings.task_queue,
        )
        peak_rss = process.memory_info().rss
        backlog_samples: list[int] = []

        async def sample() -> None:
            nonlocal peak_rss
            while True:
                peak_rss = max(peak_rss, process.memory_info().rss)
                backlog_samples.append(
                    int(await scalar(engine, "SELECT count(*) FROM outbox_events"))
                )
                await asyncio.sleep(1)

        sampler = asyncio.create_task(sample())
        offered, offer_seconds = await offer(engine)
        backlog_at_end = int(await scalar(engine, "SELECT count(*) FROM outbox_events"))
        drain_started = time.monotonic()

        async def drained() -> bool:
            return await scalar(engine, "SELECT count(*) FROM outbox_events") == 0

        await wait_for(drained, within=SECONDS * 10 + 60, interval=0.2)
        drain_seconds = time.monotonic() - drain_started
        sampler.cancel()
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{worker.metrics_port}/metrics")).text

    fault_report.injected(
        f"offered {RATE}/s learning events for {SECONDS:g} s (one transaction per {TICK} s)"
    )
    fault_report.measured(
        f"reached {offered / offer_seconds:,.0f} events/s offered ({offered:,} in "
        f"{offer_seconds:.1f} s); peak backlog {max(backlog_samples, default=0):,}, "
        f"{backlog_at_end:,} left when offering stopped, drained {drain_seconds:.1f} s later "
        f"(overall {offered / (offer_seconds + drain_seconds):,.0f} delivered/s); delivery "
        f"latency p99 {p99_upper_bound(metrics)}; worker RSS peak "
        f"{peak_rss / 2**20:.0f} MiB"
    )
    totals = await scalar(engine, "SELECT sum(total_solved) FROM learn_stats")
    applied = await scalar(engine, "SELECT count(*) FROM learning_records WHERE stats_applied")
    assert totals == applied == offered
    assert await scalar(engine, "SELECT count(*) FROM outbox_dead_letters") == 0
    fault_report.verified(
        f"backlog drained to 0; all {offered:,} events counted exactly once (sum of totals = "
        "applied records = offered), no dead letters"
    )
