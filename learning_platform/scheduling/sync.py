"""Bringing Temporal's schedules in line with the declared set, keeping operator state.

`plan()` says what `apply()` would do; `apply()` creates what is missing, updates what differs
(keeping a pause and its note), and deletes schedules this deployment created that are no longer
declared. Every declaration is validated before anything is changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from croniter import croniter
from temporalio.api.common.v1 import Payload
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleDescription,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from learning_platform.core.errors import UsageError
from learning_platform.core.settings import Settings
from learning_platform.jobs.contracts import JobSchedule

MANAGED_BY = "learning-jobs schedules.py"
CREATED_NOTE = "created by schedules.py apply"

Outcome = Literal["created", "updated", "unchanged", "deleted"]


class ScheduleDeclarationError(UsageError):
    """The declared set is invalid; nothing was changed."""


@dataclass(frozen=True)
class Change:
    schedule_id: str
    outcome: Outcome
    details: list[str] = field(default_factory=list)


def full_id(job_id: str, settings: Settings) -> str:
    return f"{settings.schedule_id_prefix}{job_id}"


def validate(declared: Sequence[JobSchedule]) -> None:
    problems: list[str] = []
    seen: set[str] = set()
    for job in declared:
        where = f"schedule {job.schedule_id!r}"
        if job.schedule_id in seen:
            problems.append(f"{where}: declared twice")
        seen.add(job.schedule_id)
        if job.cron is not None and not croniter.is_valid(job.cron):
            problems.append(f"{where}: cron {job.cron!r} is not a valid cron expression")
        if job.every is not None and job.every.total_seconds() < 1:
            problems.append(f"{where}: every={job.every} is shorter than one second")
        if job.run_timeout.total_seconds() <= 0:
            problems.append(f"{where}: execution_timeout must be positive")
        if not dataclasses.is_dataclass(job.arg):
            problems.append(f"{where}: arg must be a dataclass instance")
    if problems:
        raise ScheduleDeclarationError(
            "invalid schedule declarations (nothing was applied):\n  " + "\n  ".join(problems)
        )


def build_schedule(job: JobSchedule, settings: Settings) -> Schedule:
    if job.cron is not None:
        spec = ScheduleSpec(cron_expressions=[job.cron], time_zone_name=settings.schedule_timezone)
    else:
        assert job.every is not None
        spec = ScheduleSpec(intervals=[ScheduleIntervalSpec(every=job.every)])
    return Schedule(
        action=ScheduleActionStartWorkflow(
            job.workflow,
            job.arg,
            id=full_id(job.schedule_id, settings),
            task_queue=settings.task_queue,
            execution_timeout=job.run_timeout,
            # The server turns cron text into calendar specs; the text is kept here to diff on.
            memo={"schedule": job.schedule_id, "cron": job.cron or ""},
            static_summary=job.description,
            static_details=run_details(job, settings),
        ),
        spec=spec,
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=job.catchup),
        state=ScheduleState(note=CREATED_NOTE),
    )


def run_details(job: JobSchedule, settings: Settings) -> str:
    """Every run's static details (Markdown; the UI's User Metadata tab, `temporal workflow
    describe`): which schedule started it and where its outcome is."""
    when = f"cron `{job.cron}` ({settings.schedule_timezone})" if job.cron else f"every {job.every}"
    return (
        f"A run of schedule `{job.schedule_id}`, {when}; it times out after "
        f"{job.execution_timeout}.\n\n"
        "Its outcome, duration and counts: this run's current details and its memo `job_run`; "
        "the latest runs: `schedules.py status`."
    )


async def _plain(value: object, converter: DataConverter) -> object:
    """A described schedule holds args, memo and summary values as payloads, encrypted when
    the payload codec is on (with a fresh nonce each time, so they are compared decoded)."""
    if isinstance(value, Payload):
        return (await converter.decode([value]))[0]
    return value


async def differences(
    declared: Schedule, existing: ScheduleDescription, converter: DataConverter
) -> list[str]:
    """What differs between a declared schedule and the described one, for a person to read."""
    want, have = declared.action, existing.schedule.action
    assert isinstance(want, ScheduleActionStartWorkflow)
    if not isinstance(have, ScheduleActionStartWorkflow):
        return ["action is not start-workflow"]
    # Through the payload converter and back: the declared dataclasses as the described
    # schedule's decoded JSON looks.
    declared_args = await converter.decode(await converter.encode(want.args))
    existing_args = [await _plain(arg, converter) for arg in have.args]
    found: list[str] = []

    def check(name: str, wanted: object, actual: object) -> None:
        if wanted != actual:
            found.append(f"{name}: {actual!r} -> {wanted!r}")

    check("workflow", want.workflow, have.workflow)
    check("args", declared_args, existing_args)
    check("task queue", want.task_queue, have.task_queue)
    check("execution timeout", want.execution_timeout, have.execution_timeout)
    check("summary", want.static_summary, await _plain(have.static_summary, converter))
    check("details", want.static_details, await _plain(have.static_details, converter))
    check(
        "cron",
        (want.memo or {}).get("cron"),
        await _plain((have.memo or {}).get("cron"), converter),
    )
    spec, policy = existing.schedule.spec, existing.schedule.policy
    check("intervals", declared.spec.intervals, spec.intervals)
    check("time zone", declared.spec.time_zone_name, spec.time_zone_name)
    check("overlap", declared.policy.overlap, policy.overlap)
    check("catch-up window", declared.policy.catchup_window, policy.catchup_window)
    return found


async def describe_or_none(client: Client, schedule_id: str) -> ScheduleDescription | None:
    try:
        return await client.get_schedule_handle(schedule_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


async def _managed_ids(client: Client, settings: Settings) -> set[str]:
    """Schedules this deployment (same task queue) created, whether declared or not."""
    ids: set[str] = set()
    async for listed in await client.list_schedules():
        memo = await listed.memo()
        if memo.get("managed-by") == MANAGED_BY and memo.get("task-queue") == settings.task_queue:
            ids.add(listed.id)
    return ids


async def plan(client: Client, settings: Settings, declared: Sequence[JobSchedule]) -> list[Change]:
    """What apply() would do; changes nothing."""
    validate(declared)
    changes: list[Change] = []
    declared_ids = set()
    for job in declared:
        schedule_id = full_id(job.schedule_id, settings)
        declared_ids.add(schedule_id)
        existing = await describe_or_none(client, schedule_id)
        if existing is None:
            changes.append(Change(schedule_id, "created"))
            continue
        diff = await differences(build_schedule(job, settings), existing, client.data_converter)
        changes.append(Change(schedule_id, "updated" if diff else "unchanged", diff))
    for orphan in sorted(await _managed_ids(client, settings) - declared_ids):
        # The listing is eventually consistent and may still show a schedule just deleted.
        if await describe_or_none(client, orphan) is not None:
            changes.append(Change(orphan, "deleted", ["no longer declared"]))
    return changes


async def apply(
    client: Client, settings: Settings, declared: Sequence[JobSchedule]
) -> list[Change]:
    changes = await plan(client, settings, declared)
    by_id = {full_id(job.schedule_id, settings): job for job in declared}
    for change in changes:
        if change.outcome == "created":
            await _create(client, settings, change.schedule_id, by_id[change.schedule_id])
        elif change.outcome == "updated":
            await _update(client, build_schedule(by_id[change.schedule_id], settings), change)
        elif change.outcome == "deleted":
            await _delete(client, change.schedule_id)
    return changes


async def _delete(client: Client, schedule_id: str) -> None:
    try:
        await client.get_schedule_handle(schedule_id).delete()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:  # gone already: deleted by a concurrent apply
            raise


async def _create(client: Client, settings: Settings, schedule_id: str, job: JobSchedule) -> None:
    # Created concurrently by another apply: fine, the next apply reconciles any difference.
    with contextlib.suppress(ScheduleAlreadyRunningError):
        await client.create_schedule(
            schedule_id,
            build_schedule(job, settings),
            memo={"managed-by": MANAGED_BY, "task-queue": settings.task_queue},
        )


async def _update(client: Client, schedule: Schedule, change: Change) -> None:
    def keep_operator_state(current: ScheduleUpdateInput) -> ScheduleUpdate:
        # A pause (and its note) set by an operator survives a redeploy.
        return ScheduleUpdate(
            dataclasses.replace(schedule, state=current.description.schedule.state)
        )

    await client.get_schedule_handle(change.schedule_id).update(keep_operator_state)
