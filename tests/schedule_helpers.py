"""Waiting for what a schedule started. Temporal offers no event for a schedule's progress, so
these poll `describe()`; callers bound them with `asyncio.timeout`."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleBackfill,
    ScheduleDescription,
    ScheduleOverlapPolicy,
    WorkflowHandle,
)

from learning_platform.core.settings import Settings
from learning_platform.scheduling.sync import full_id

POLL_SECONDS = 0.1


async def wait_for_actions(client: Client, schedule_id: str, count: int) -> ScheduleDescription:
    """Until the schedule reports `count` actions taken."""
    while True:
        description = await client.get_schedule_handle(schedule_id).describe()
        if description.info.num_actions >= count:
            return description
        await asyncio.sleep(POLL_SECONDS)


async def wait_until_idle(client: Client, schedule_id: str) -> ScheduleDescription:
    """Until nothing the schedule started is running and no buffered start followed."""
    previous: ScheduleDescription | None = None
    while True:
        description = await client.get_schedule_handle(schedule_id).describe()
        info = description.info
        if (
            previous is not None
            and not info.running_actions
            and info.num_actions == previous.info.num_actions
        ):
            return description
        previous = description if not info.running_actions else None
        await asyncio.sleep(POLL_SECONDS * 3)


async def results_of_recent_runs(client: Client, description: ScheduleDescription) -> list[Any]:
    """The results of the workflows the schedule started, in the order they were scheduled."""
    results = []
    for action in description.info.recent_actions:
        started = action.action
        assert isinstance(started, ScheduleActionExecutionStartWorkflow)
        results.append(await client.get_workflow_handle(started.workflow_id).result())
    return results


async def run_schedule_now(
    client: Client, settings: Settings, schedule_id: str
) -> WorkflowHandle[Any, Any]:
    """Trigger the declared schedule (paused or not); the run it started, once it has ended."""
    handle = client.get_schedule_handle(full_id(schedule_id, settings))
    before = (await handle.describe()).info.num_actions
    await handle.trigger()
    return await _ended_run(client, full_id(schedule_id, settings), before + 1)


async def backfill_and_wait(
    client: Client, settings: Settings, schedule_id: str, tick: datetime
) -> WorkflowHandle[Any, Any]:
    """The declared schedule's past `tick` run now, as `schedules.py backfill` does; the run,
    once it has ended."""
    handle = client.get_schedule_handle(full_id(schedule_id, settings))
    before = (await handle.describe()).info.num_actions
    await handle.backfill(
        ScheduleBackfill(
            start_at=tick - timedelta(minutes=1),
            end_at=tick + timedelta(minutes=1),
            overlap=ScheduleOverlapPolicy.ALLOW_ALL,
        )
    )
    return await _ended_run(client, full_id(schedule_id, settings), before + 1)


async def _ended_run(client: Client, schedule_id: str, action: int) -> WorkflowHandle[Any, Any]:
    description = await wait_for_actions(client, schedule_id, action)
    started = description.info.recent_actions[-1].action
    assert isinstance(started, ScheduleActionExecutionStartWorkflow)
    run = client.get_workflow_handle(started.workflow_id, run_id=started.first_execution_run_id)
    await run.result()
    return run
