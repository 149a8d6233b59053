from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, ScheduleBackfill, ScheduleOverlapPolicy
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

import schedules
from activities.registry import Dependencies
from learning_platform.core.errors import UnavailableError
from learning_platform.core.settings import Settings
from learning_platform.dev.embedded_temporal import temporal_cli_path
from learning_platform.jobs.contracts import JobSchedule
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import ScheduleDeclarationError, apply, full_id, plan
from tests.factories import add_session, add_user, session_statuses
from tests.schedule_helpers import results_of_recent_runs, wait_for_actions, wait_until_idle
from worker import create_worker
from workflows.registry import ALL_WORKFLOWS


def temporal_cli(client: Client, *args: str) -> str:
    command = [temporal_cli_path(), *args, "--address", client.service_client.config.target_host]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=30).stdout


def outcomes(changes: list) -> dict[str, str]:  # type: ignore[type-arg]
    return {change.schedule_id: change.outcome for change in changes}


async def test_apply_creates_then_reports_unchanged(client: Client, settings: Settings) -> None:
    declared = declared_schedules(settings)
    ids = {full_id(job.schedule_id, settings) for job in declared}

    first = await apply(client, settings, declared)
    second = await apply(client, settings, declared)

    assert outcomes(first) == dict.fromkeys(ids, "created")
    assert outcomes(second) == dict.fromkeys(ids, "unchanged")
    assert outcomes(await plan(client, settings, declared)) == dict.fromkeys(ids, "unchanged")


async def test_changed_declaration_is_updated_and_an_operator_pause_survives(
    client: Client, settings: Settings
) -> None:
    declared = declared_schedules(settings)
    await apply(client, settings, declared)
    target = full_id("cleanup-stale-sessions", settings)
    # Paused the way an operator would, with the CLI.
    temporal_cli(
        client, "schedule", "toggle", "--schedule-id", target, "--pause", "--reason", "db upgrade"
    )
    changed = [
        dataclasses.replace(job, catchup_window=timedelta(hours=5))
        if job.schedule_id == "cleanup-stale-sessions"
        else job
        for job in declared
    ]

    preview = await plan(client, settings, changed)
    changes = await apply(client, settings, changed)

    assert outcomes(preview)[target] == "updated"
    assert any("catch-up window" in detail for c in preview for detail in c.details)
    assert outcomes(changes)[target] == "updated"
    description = await client.get_schedule_handle(target).describe()
    assert description.schedule.policy.catchup_window == timedelta(hours=5)
    assert description.schedule.state.paused
    assert description.schedule.state.note == "db upgrade"
    assert outcomes(await apply(client, settings, changed))[target] == "unchanged"


async def test_undeclared_schedules_of_this_deployment_are_pruned_others_kept(
    client: Client, settings: Settings
) -> None:
    declared = declared_schedules(settings)
    await apply(client, settings, declared)
    other_deployment = settings.model_copy(update={"task_queue": settings.task_queue + "-other"})
    await apply(client, other_deployment, declared[:1])
    pruned = full_id(declared[-1].schedule_id, settings)

    changes = await apply(client, settings, declared[:-1])

    assert outcomes(changes)[pruned] == "deleted"
    # describe, not list_schedules: the listing may still show a schedule just deleted.
    with pytest.raises(RPCError) as gone:
        await client.get_schedule_handle(pruned).describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND
    await client.get_schedule_handle(full_id(declared[0].schedule_id, other_deployment)).describe()
    again = await apply(client, settings, declared[:-1])
    assert pruned not in outcomes(again), (
        "a schedule still listed after deletion is not pruned twice"
    )


async def test_invalid_declaration_changes_nothing(client: Client, settings: Settings) -> None:
    declared = declared_schedules(settings)
    broken = [*declared, dataclasses.replace(declared[0], schedule_id="broken", cron="0 25 * * *")]

    with pytest.raises(ScheduleDeclarationError, match=r"'broken'.*'0 25 \* \* \*'"):
        await apply(client, settings, broken)

    for job in declared:
        with pytest.raises(Exception, match=r"not found|NotFound"):
            await client.get_schedule_handle(full_id(job.schedule_id, settings)).describe()


def test_every_declared_schedule_starts_a_workflow_the_worker_registers(
    settings: Settings,
) -> None:
    registered = {cls.__temporal_workflow_definition.name for cls in ALL_WORKFLOWS}  # type: ignore[attr-defined]
    unregistered = {job.workflow for job in declared_schedules(settings)} - registered
    assert unregistered == set(), "add these workflows to workflows/registry.py"


def test_a_declaration_needs_exactly_one_timing() -> None:
    with pytest.raises(ValueError, match="exactly one of cron= and every="):
        JobSchedule(
            schedule_id="x",
            workflow="UpdateMetrics",
            arg=None,
            description="",
            execution_timeout=timedelta(minutes=1),
            catchup_window=timedelta(minutes=1),
        )


async def test_sdk_and_cli_views_agree(client: Client, settings: Settings) -> None:
    await apply(client, settings, declared_schedules(settings))
    target = full_id("cleanup-stale-sessions", settings)
    await client.get_schedule_handle(target).pause(note="checking views")

    listed = json.loads(temporal_cli(client, "schedule", "list", "-o", "json"))
    described = json.loads(
        temporal_cli(client, "schedule", "describe", "--schedule-id", target, "-o", "json")
    )
    sdk = await client.get_schedule_handle(target).describe()

    listed_ids = {entry["scheduleId"] for entry in listed}
    assert {
        full_id(job.schedule_id, settings) for job in declared_schedules(settings)
    } <= listed_ids
    assert described["schedule"]["state"]["paused"] is True
    assert described["schedule"]["state"]["notes"] == sdk.schedule.state.note == "checking views"
    assert described["schedule"]["spec"]["timezoneName"] == settings.schedule_timezone
    assert described["schedule"]["action"]["startWorkflow"]["workflowType"]["name"] == (
        "CleanupStaleSessions"
    )


async def test_trigger_runs_the_job_at_its_scheduled_time(
    client: Client, settings: Settings, engine: AsyncEngine, worker: Worker
) -> None:
    await apply(client, settings, declared_schedules(settings))
    user = await add_user(engine)
    stale = await add_session(engine, user, "recording", datetime.now(UTC) - timedelta(hours=25))

    await schedules.run(["trigger", "cleanup-stale-sessions"], settings)

    async with asyncio.timeout(30):
        description = await wait_for_actions(client, full_id("cleanup-stale-sessions", settings), 1)
    [result] = await results_of_recent_runs(client, description)
    assert result["failed_sessions"] == 1
    assert (await session_statuses(engine))[stale] == "failed"


async def test_backfill_passes_each_past_tick_as_the_scheduled_time(
    client: Client, settings: Settings, engine: AsyncEngine, worker: Worker
) -> None:
    await apply(client, settings, declared_schedules(settings))
    schedule_id = full_id("cleanup-stale-sessions", settings)
    user = await add_user(engine)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # Stale for a run at `now`, but not for the runs of 10 and 9 hours ago.
    session = await add_session(engine, user, "paused", now - timedelta(hours=30))

    await client.get_schedule_handle(schedule_id).backfill(
        ScheduleBackfill(
            start_at=now - timedelta(hours=10, minutes=30),
            end_at=now - timedelta(hours=8, minutes=30),
            overlap=ScheduleOverlapPolicy.ALLOW_ALL,
        )
    )

    async with asyncio.timeout(30):
        description = await wait_for_actions(client, schedule_id, 2)
    results = await results_of_recent_runs(client, description)
    cutoffs = sorted(datetime.fromisoformat(r["cutoff"]) for r in results)
    assert cutoffs == [now - timedelta(hours=34), now - timedelta(hours=33)]
    assert [r["failed_sessions"] for r in results] == [0, 0]
    assert (await session_statuses(engine))[session] == "paused"


async def test_three_workers_each_tick_runs_once(
    client: Client, settings: Settings, engine: AsyncEngine, worker: Worker, deps: Dependencies
) -> None:
    await apply(client, settings, declared_schedules(settings))
    schedule_id = full_id("cleanup-stale-sessions", settings)
    user = await add_user(engine)
    for _ in range(20):
        await add_session(engine, user, "recording", datetime.now(UTC) - timedelta(days=2))
    handle = client.get_schedule_handle(schedule_id)
    # The SDK allows one worker per task queue and connection, as in separate processes.
    target = client.service_client.config.target_host
    other_clients = [
        await Client.connect(target, data_converter=client.data_converter) for _ in range(2)
    ]

    now = datetime.now(UTC)

    async with (
        create_worker(other_clients[0], deps),
        create_worker(other_clients[1], deps),
    ):
        # Ten distinct hourly ticks, and a storm of manual triggers on top.
        await handle.backfill(
            ScheduleBackfill(
                start_at=now - timedelta(hours=10, minutes=30),
                end_at=now - timedelta(minutes=30),
                overlap=ScheduleOverlapPolicy.BUFFER_ALL,
            )
        )
        for _ in range(10):
            await handle.trigger()
        # A bound against a hang, not a speed target: the runs are sequential (BUFFER_ALL),
        # and on a loaded 2-core CI machine ten of them have taken over a minute.
        async with asyncio.timeout(180):
            await wait_for_actions(client, schedule_id, 10)
            description = await wait_until_idle(client, schedule_id)
        results = await results_of_recent_runs(client, description)

    started = [action.action for action in description.info.recent_actions]
    workflow_ids = [getattr(action, "workflow_id", None) for action in started]
    assert len(workflow_ids) == len(set(workflow_ids)) == description.info.num_actions
    # While a run is going, a trigger is skipped (overlap SKIP), so at least the ten ticks ran.
    assert len(results) >= 10
    # Stale at every tick: the first run fails all 20, no later run finds any left.
    assert sum(r["failed_sessions"] for r in results) == 20
    assert set((await session_statuses(engine)).values()) == {"failed"}


async def test_commands_before_apply_say_to_apply(
    client: Client, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    await schedules.run(["list"], settings)
    listed = capsys.readouterr().out.splitlines()[1:]
    with pytest.raises(UnavailableError) as trigger:
        await schedules.run(["trigger", "cleanup-stale-sessions"], settings)

    assert len(listed) == len(declared_schedules(settings))
    assert all(line.split()[-4:] == ["missing", "-", "run", "`apply`"] for line in listed), listed
    assert "run `schedules.py apply` first" in str(trigger.value)
