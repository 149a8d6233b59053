"""`schedules.py status`: last run with outcome, duration and counts; pause; next run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, ScheduleBackfill
from temporalio.worker import Worker

import schedules
from activities.registry import Dependencies
from learning_platform.core.database import create_engine
from learning_platform.core.metrics import free_loopback_port
from learning_platform.core.settings import Settings
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import apply, full_id
from tests.factories import add_session, add_user
from tests.schedule_helpers import wait_for_actions, wait_until_idle
from worker import create_worker
from workflows.job_run import RUN_MEMO_KEY


async def backfill_one(client: Client, schedule_id: str, tick: datetime) -> None:
    """Run the schedule's tick at `tick` (the scheduled time passed in) and wait for it."""
    await client.get_schedule_handle(schedule_id).backfill(
        ScheduleBackfill(start_at=tick - timedelta(seconds=1), end_at=tick + timedelta(seconds=1))
    )
    async with asyncio.timeout(60):
        await wait_for_actions(client, schedule_id, 1)
        await wait_until_idle(client, schedule_id)


async def status_of(settings: Settings, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    await schedules.run(["status", *args], settings)
    return capsys.readouterr().out


async def test_status_shows_the_last_run_its_counts_and_the_pause(
    client: Client,
    settings: Settings,
    engine: AsyncEngine,
    worker: Worker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await apply(client, settings, declared_schedules(settings))
    schedule_id = full_id("cleanup-stale-sessions", settings)
    user = await add_user(engine)
    await add_session(engine, user, "recording", datetime.now(UTC) - timedelta(hours=30))
    tick = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    await backfill_one(client, schedule_id, tick)
    await schedules.run(
        ["pause", "cleanup-stale-sessions", "--note", "DB maintenance, ops"], settings
    )

    out = await status_of(settings, capsys, "cleanup-stale-sessions")

    lines = out.splitlines()
    assert lines[0].startswith(schedule_id) and lines[0].endswith("paused")
    assert "  note:      DB maintenance, ops" in lines
    [last] = [line for line in lines if line.startswith("  last run:")]
    assert f"scheduled {tick.astimezone(settings.timezone).isoformat()}  completed" in last
    assert last.endswith(" s")
    [counts] = [line for line in lines if line.startswith("  counts:")]
    assert '"failed_sessions": 1' in counts
    assert f'"cutoff": "{(tick - timedelta(hours=24)).isoformat()}"' in counts
    assert any(line.startswith("  next run:  20") for line in lines)
    # Only the asked-for schedule.
    assert full_id("update-metrics", settings) not in out

    # The same counts are in the run's memo, which the Temporal UI shows on its page.
    description = await client.get_schedule_handle(schedule_id).describe()
    action = description.info.recent_actions[-1].action
    assert isinstance(action, ScheduleActionExecutionStartWorkflow)
    memo = await (await client.get_workflow_handle(action.workflow_id).describe()).memo()
    assert memo[RUN_MEMO_KEY]["outcome"] == "success"
    assert memo[RUN_MEMO_KEY]["counts"]["failed_sessions"] == 1
    assert memo[RUN_MEMO_KEY]["duration_s"] >= 0


@pytest.fixture
async def worker_without_database(client: Client, settings: Settings) -> AsyncIterator[Worker]:
    """The production worker wiring, whose database refuses connections."""
    engine = create_engine(f"postgresql://nobody@127.0.0.1:{free_loopback_port()}/none", 1)
    worker = create_worker(client, Dependencies(settings=settings, engine=engine, temporal=client))
    try:
        async with worker:
            yield worker
    finally:
        await engine.dispose()


async def test_status_shows_a_failed_run_with_its_cause_and_every_schedule(
    client: Client,
    settings: Settings,
    worker_without_database: Worker,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await apply(client, settings, declared_schedules(settings))
    schedule_id = full_id("update-metrics", settings)
    await backfill_one(client, schedule_id, datetime.now(UTC).replace(second=0, microsecond=0))

    out = await status_of(settings, capsys)

    blocks = {block.split()[0]: block for block in out.split("\n\n")}
    assert set(blocks) == {
        full_id(job.schedule_id, settings) for job in declared_schedules(settings)
    }
    failed = blocks[schedule_id].splitlines()
    assert failed[0].endswith("active")
    [last] = [line for line in failed if line.startswith("  last run:")]
    assert "  failed  " in last
    [failure] = [line for line in failed if line.startswith("  failure:")]
    assert "Activity task failed" in failure and "onnect" in failure, failure
    assert "  last run:  -" in blocks[full_id("learn-stats-daily", settings)]
