"""Scenario 3: the Temporal server stops and starts again on the same database file while
jobs run. Schedules resume; a daily job whose time passed during the outage runs once,
late, computing what the on-time run would have; the relay loses no event."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import (
    Client,
    ScheduleCalendarSpec,
    ScheduleRange,
    ScheduleSpec,
)
from temporalio.common import SearchAttributeKey

from learning_platform.core.settings import Settings
from learning_platform.jobs.contracts import JobSchedule
from learning_platform.jobs.outbox_relay.contracts import OutboxRelayInput
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import build_schedule, full_id
from tests.faults.report import FaultReport
from tests.faults.servers import OwnTemporal
from tests.faults.world import scalar, scheduled_runs, seed_learning_users, seed_relay_records
from tests.learning_helpers import record, wait_for
from tests.worker_process import running_worker

pytestmark = pytest.mark.faults

OUTAGE_SECONDS = float(os.environ.get("FAULTS_TEMPORAL_OUTAGE_SECONDS", "15"))
SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")


def declared(settings: Settings, schedule_id: str) -> JobSchedule:
    return next(job for job in declared_schedules(settings) if job.schedule_id == schedule_id)


def at_second(moment: datetime) -> ScheduleSpec:
    """A calendar spec firing once, at `moment` (UTC, to the second)."""
    return ScheduleSpec(
        calendars=[
            ScheduleCalendarSpec(
                second=[ScheduleRange(moment.second)],
                minute=[ScheduleRange(moment.minute)],
                hour=[ScheduleRange(moment.hour)],
                day_of_month=[ScheduleRange(moment.day)],
                month=[ScheduleRange(moment.month)],
                year=[ScheduleRange(moment.year)],
            )
        ]
    )


async def test_s3_temporal_restart_schedules_resume_and_missed_daily_tick_runs_once(
    engine: AsyncEngine,
    client: Client,
    settings: Settings,
    own_temporal: OwnTemporal,
    fault_report: FaultReport,
) -> None:
    broken, _ = await seed_learning_users(engine, settings, broken=5, corrupt=0)
    learners = await seed_relay_records(engine, users=3, per_user=2)
    daily = declared(settings, "learn-stats-daily")
    metrics = dataclasses.replace(declared(settings, "update-metrics"), every=timedelta(seconds=2))
    daily_id, metrics_id = full_id(daily.schedule_id, settings), full_id("update-metrics", settings)
    # The daily job's own declaration (its 3-day catch-up window), ticking inside the outage.
    tick = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    daily_schedule = dataclasses.replace(build_schedule(daily, settings), spec=at_second(tick))
    await client.create_schedule(daily_id, daily_schedule)
    await client.create_schedule(metrics_id, build_schedule(metrics, settings))

    with running_worker(settings):
        relay = await client.start_workflow(
            "OutboxRelay",
            OutboxRelayInput(drain_seconds=120),
            id=f"relay-{uuid.uuid4().hex[:6]}",
            task_queue=settings.task_queue,
        )
        async with asyncio.timeout(30):
            await wait_for(lambda: learners_counted(engine, learners, 2), within=30)
        metrics_before = (await client.get_schedule_handle(metrics_id).describe()).info.num_actions

        own_temporal.stop()
        stopped = time.monotonic()
        during = [await record(engine, user, datetime.now(UTC)) for user in learners]
        await asyncio.sleep(max(0.0, (tick - datetime.now(UTC)).total_seconds()) + OUTAGE_SECONDS)
        own_temporal.start()
        outage = time.monotonic() - stopped
        fault_report.injected(
            f"Temporal dev server stopped for {outage:.1f} s (same SQLite file), across the "
            f"daily job's tick at {tick:%H:%M:%S} UTC; {len(during)} learning events committed "
            "while it was down"
        )

        async with asyncio.timeout(90):
            await wait_for(lambda: daily_ran(client, daily_id), within=90, interval=0.5)
            await wait_for(
                lambda: metrics_resumed(client, metrics_id, metrics_before + 2), within=60
            )
            await wait_for(lambda: learners_counted(engine, learners, 3), within=60)
        runs = await scheduled_runs(client, daily_id)
        result = await client.get_workflow_handle(runs[0].id).result()
        await relay.terminate("scenario over")

    assert len(runs) == 1
    assert runs[0].typed_search_attributes.get(SCHEDULED_START) == tick
    expected_yesterday = (tick.astimezone(settings.timezone).date() - timedelta(days=1)).isoformat()
    assert result["yesterday"] == expected_yesterday
    assert result["reset_streaks"] == len(broken)
    fault_report.verified(
        f"the missed daily tick ran once after the restart, with scheduled time {tick:%H:%M:%S} "
        f"(yesterday = {expected_yesterday}), resetting {len(broken)} streaks"
    )
    fault_report.verified("the 2-second schedule kept starting runs after the restart")
    assert await scalar(engine, "SELECT count(*) FROM outbox_events") == 0
    fault_report.verified("the relay resumed: every learning event counted once (3 per learner)")


async def learners_counted(engine: AsyncEngine, learners: list[int], each: int) -> bool:
    totals = await scalar(
        engine,
        "SELECT array_agg(total_solved) FROM learn_stats WHERE user_id = ANY(:ids)",
        ids=learners,
    )
    if totals is not None and any(t > each for t in totals):
        raise AssertionError(f"a learning event was counted twice: {totals}")
    return totals == [each] * len(learners)


async def daily_ran(client: Client, schedule_id: str) -> bool:
    try:
        runs = await scheduled_runs(client, schedule_id)
    except Exception:
        return False
    return len(runs) > 0 and runs[0].close_time is not None


async def metrics_resumed(client: Client, schedule_id: str, actions: int) -> bool:
    description = await client.get_schedule_handle(schedule_id).describe()
    return description.info.num_actions >= actions
