"""Waiting for what a schedule started. Temporal offers no event for a schedule's progress, so
these poll `describe()`; callers bound them with `asyncio.timeout`."""

from __future__ import annotations

import asyncio
from typing import Any

from temporalio.client import Client, ScheduleActionExecutionStartWorkflow, ScheduleDescription

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
