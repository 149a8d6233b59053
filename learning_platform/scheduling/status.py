"""`schedules.py status`: each schedule's last run (outcome, duration, counts), pause and next run.

The counts come from the memo that `workflows.job_run` leaves on every run, so the same numbers
are on the run's page in the Temporal UI.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    WorkflowExecutionStatus,
    WorkflowHistoryEventFilterType,
)

from learning_platform.core.settings import Settings
from learning_platform.jobs.contracts import RUN_MEMO_KEY
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import describe_or_none, full_id


@dataclass
class LastRun:
    workflow_id: str
    scheduled_at: datetime
    status: str
    duration_s: float | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


@dataclass
class ScheduleStatus:
    schedule_id: str
    when: str
    state: str  # active, paused or missing (declared but not in Temporal)
    note: str = ""
    next_run: datetime | None = None
    last_run: LastRun | None = None


async def schedule_statuses(
    client: Client, settings: Settings, only: str | None = None
) -> list[ScheduleStatus]:
    """Every declared schedule (or the one declared as `only`), in declaration order."""
    statuses = []
    for job in declared_schedules(settings):
        if only is not None and job.schedule_id != only:
            continue
        schedule_id = full_id(job.schedule_id, settings)
        when = job.cron or f"every {job.every}"
        description = await describe_or_none(client, schedule_id)
        if description is None:
            statuses.append(ScheduleStatus(schedule_id, when, "missing", "run `apply`"))
            continue
        state, info = description.schedule.state, description.info
        last = info.recent_actions[-1] if info.recent_actions else None
        statuses.append(
            ScheduleStatus(
                schedule_id,
                when,
                "paused" if state.paused else "active",
                state.note or "",
                info.next_action_times[0] if info.next_action_times else None,
                await _last_run(client, last.action, last.scheduled_at) if last else None,
            )
        )
    return statuses


async def _last_run(client: Client, action: object, scheduled_at: datetime) -> LastRun | None:
    if not isinstance(action, ScheduleActionExecutionStartWorkflow):
        return None
    handle = client.get_workflow_handle(action.workflow_id, run_id=action.first_execution_run_id)
    described = await handle.describe()
    status = described.status or WorkflowExecutionStatus.RUNNING
    run = LastRun(action.workflow_id, scheduled_at, status.name.lower().replace("_", " "))
    memo = (await described.memo()).get(RUN_MEMO_KEY)
    if isinstance(memo, dict):
        run.duration_s = memo.get("duration_s")
        run.counts = memo.get("counts") or {}
    elif described.close_time is not None:
        run.duration_s = (described.close_time - described.start_time).total_seconds()
    if status == WorkflowExecutionStatus.FAILED:
        run.failure = await _failure_message(client, action)
    return run


async def _failure_message(client: Client, action: ScheduleActionExecutionStartWorkflow) -> str:
    """The failure and its innermost cause, e.g. "Activity task failed: connection refused"."""
    handle = client.get_workflow_handle(action.workflow_id, run_id=action.first_execution_run_id)
    events = handle.fetch_history_events(
        event_filter_type=WorkflowHistoryEventFilterType.CLOSE_EVENT
    )
    async for event in events:
        if event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED:
            continue
        # Decoded with the client's converter: with the payload codec on, messages are encrypted.
        error: BaseException | None = await client.data_converter.decode_failure(
            event.workflow_execution_failed_event_attributes.failure
        )
        messages = []
        while error is not None:
            messages.append(getattr(error, "message", None) or str(error))
            error = error.__cause__
        return ": ".join(message for message in messages if message)
    return ""


def render(statuses: list[ScheduleStatus], zone: tzinfo) -> str:
    """One block per schedule, readable at 3 a.m. and greppable."""
    blocks = []
    for status in statuses:
        lines = [f"{status.schedule_id}  ({status.when})  {status.state}"]
        if status.note:
            lines.append(f"  note:      {status.note}")
        run = status.last_run
        if run is None:
            lines.append("  last run:  -")
        else:
            duration = "-" if run.duration_s is None else f"{run.duration_s:.1f} s"
            lines.append(
                f"  last run:  scheduled {run.scheduled_at.astimezone(zone).isoformat()}  "
                f"{run.status}  {duration}"
            )
            lines.append(f"  workflow:  {run.workflow_id}")
            if run.counts:
                lines.append(f"  counts:    {json.dumps(run.counts, sort_keys=True)}")
            if run.failure:
                lines.append(f"  failure:   {run.failure}")
        next_run = status.next_run.astimezone(zone).isoformat() if status.next_run else "-"
        lines.append(f"  next run:  {next_run}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
