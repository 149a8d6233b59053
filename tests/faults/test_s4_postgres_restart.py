"""Scenario 4: PostgreSQL restarts while a batch job and the outbox relay run and a client
streams notifications. Activities fail, retry and complete; the API's LISTEN connection comes
back and the client, resuming with Last-Event-ID, sees every notification once, in order."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from learning_platform.core.notifications import record_notification
from learning_platform.core.settings import Settings
from learning_platform.jobs.browsing_sessions.contracts import CleanupStaleSessionsInput
from learning_platform.jobs.outbox_relay.contracts import OutboxRelayInput
from learning_platform.notification_api.auth import mint_token
from tests.factories import add_user
from tests.faults.report import FaultReport
from tests.faults.servers import OwnPostgres
from tests.faults.world import execute, scalar, seed_relay_records
from tests.learning_helpers import record, wait_for
from tests.sse_helpers import api_server, read_resuming, wait_for_metric
from tests.worker_process import running_worker

pytestmark = pytest.mark.faults

DOWN_SECONDS = float(os.environ.get("FAULTS_POSTGRES_DOWN_SECONDS", "5"))
STALE_SESSIONS = 10_000


async def notify(engine: AsyncEngine, user: int, n: int) -> int:
    async with engine.begin() as conn:
        notification_id = await record_notification(
            conn, user_id=user, kind="test.sent", payload={"n": n}, dedupe_key=uuid.uuid4().hex
        )
    assert notification_id is not None
    return notification_id


async def test_s4_postgres_restart_during_jobs_and_streams(
    engine: AsyncEngine,
    client: Client,
    settings: Settings,
    own_postgres: OwnPostgres,
    fault_report: FaultReport,
) -> None:
    owner = await add_user(engine, "owner@example.com")
    await execute(
        engine,
        "INSERT INTO sessions (user_id, status, updated_at) SELECT :u, 'recording', "
        "now() - interval '2 days' - make_interval(secs => n) FROM generate_series(1, :n) n",
        u=owner,
        n=STALE_SESSIONS,
    )
    learners = await seed_relay_records(engine, users=3, per_user=2)
    api_settings = settings.model_copy(
        update={
            "notification_listener_backoff_seconds": 0.2,
            "notification_listener_backoff_max_seconds": 1.0,
            "sse_heartbeat_seconds": 0.5,
        }
    )
    with running_worker(settings, CLEANUP_BATCH_SIZE="20") as worker:
        relay = await client.start_workflow(
            "OutboxRelay",
            OutboxRelayInput(drain_seconds=120),
            id=f"relay-{uuid.uuid4().hex[:6]}",
            task_queue=settings.task_queue,
        )
        async with api_server(api_settings) as url:
            token = mint_token(api_settings, owner)
            before = [await notify(engine, owner, n) for n in range(3)]
            reader = asyncio.create_task(read_resuming(url, token, count=9))
            cleanup = await client.start_workflow(
                "CleanupStaleSessions",
                CleanupStaleSessionsInput(),
                id=f"cleanup-{uuid.uuid4().hex[:6]}",
                task_queue=settings.task_queue,
            )
            await wait_for(lambda: some_failed(engine), within=30, interval=0.05)
            at_stop = await failed_sessions(engine)
            await asyncio.to_thread(own_postgres.stop)
            stopped = time.monotonic()
            await asyncio.sleep(DOWN_SECONDS)
            await asyncio.to_thread(own_postgres.start)
            fault_report.injected(
                f"PostgreSQL stopped (pg_ctl -m fast) for {time.monotonic() - stopped:.1f} s "
                f"while cleanup was at {at_stop}/{STALE_SESSIONS}, the relay was running and a "
                "client was streaming notifications"
            )
            during = [await notify(engine, owner, n) for n in range(3, 6)]
            for user in learners:
                await record(engine, user, datetime.now(UTC))
            await wait_for_metric(url, "notification_listener_up", 1)
            after = [await notify(engine, owner, n) for n in range(6, 9)]
            async with asyncio.timeout(60):
                received = await reader
            result: Any = await asyncio.wait_for(cleanup.result(), timeout=120)
            await wait_for(lambda: learners_at(engine, learners, 3), within=60, interval=0.2)
        await relay.terminate("scenario over")
        retried = worker.find_log("activity failed") or worker.find_log(
            "Completing activity as failed"
        )

    assert received == [*before, *during, *after]
    fault_report.verified(
        "the stream resumed (Last-Event-ID) with all 9 notifications once, in order"
    )
    assert (
        await scalar(engine, "SELECT count(*) FROM sessions WHERE status = 'failed'")
        == STALE_SESSIONS
    )
    fault_report.verified(
        f"cleanup completed after the restart: all {STALE_SESSIONS} stale sessions failed "
        f"(run reported {result['failed_sessions']})"
    )
    fault_report.verified("relay: every learning event counted once (3 per learner)")
    fault_report.measured(
        "worker logged failed activity attempts during the outage: " + ("yes" if retried else "no")
    )


async def failed_sessions(engine: AsyncEngine) -> int:
    return int(await scalar(engine, "SELECT count(*) FROM sessions WHERE status = 'failed'"))


async def some_failed(engine: AsyncEngine) -> bool:
    return await failed_sessions(engine) > 0


async def learners_at(engine: AsyncEngine, learners: list[int], each: int) -> bool:
    totals = await scalar(
        engine,
        "SELECT array_agg(total_solved) FROM learn_stats WHERE user_id = ANY(:ids)",
        ids=learners,
    )
    if totals is not None and any(t > each for t in totals):
        raise AssertionError(f"a learning event was counted twice: {totals}")
    return totals == [each] * len(learners)
