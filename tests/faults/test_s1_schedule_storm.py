"""Scenario 1: three worker processes, every schedule triggered 50 times in quick succession.
Each tick's effect happens exactly once, and no schedule is left stuck."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from contextlib import ExitStack

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from learning_platform.core.settings import Settings
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import apply, full_id
from tests.faults.report import FaultReport
from tests.faults.world import (
    World,
    results_of_all_runs,
    running_workflows,
    scalar,
    scheduled_runs,
    seed_world,
)
from tests.learning_helpers import wait_for
from tests.pages_server import serving_pages
from tests.schedule_helpers import wait_for_actions, wait_until_idle
from tests.worker_process import running_worker

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

TRIGGERS = int(os.environ.get("FAULTS_TRIGGERS", "50"))
WORKERS = 3
CRAWL_LOOPBACK = '["127.0.0.1"]'


async def storm(client: Client, schedule_ids: Iterable[str]) -> None:
    """TRIGGERS triggers per schedule, all schedules at once."""

    async def trigger_many(schedule_id: str) -> None:
        handle = client.get_schedule_handle(schedule_id)
        for _ in range(TRIGGERS):
            await handle.trigger()

    await asyncio.gather(*(trigger_many(s) for s in schedule_ids))


async def settle(client: Client, schedule_ids: Iterable[str]) -> None:
    async with asyncio.timeout(180):
        for schedule_id in schedule_ids:
            await wait_until_idle(client, schedule_id)


async def summed(client: Client, schedule_id: str, field: str) -> int:
    return sum(int(result[field]) for result in await results_of_all_runs(client, schedule_id))


async def everything_delivered(engine: AsyncEngine, world: World) -> bool:
    pending = await scalar(engine, "SELECT count(*) FROM outbox_events")
    open_sets = await scalar(
        engine,
        "SELECT count(*) FROM question_sets WHERE id = ANY(:ids) AND status <> 'completed'",
        ids=world.retry_sets,
    )
    processing = await scalar(engine, "SELECT count(*) FROM sessions WHERE status = 'processing'")
    return pending == 0 and open_sets == 0 and processing == 0


async def test_s1_three_workers_every_schedule_triggered_50_times(
    engine: AsyncEngine, client: Client, settings: Settings, fault_report: FaultReport
) -> None:
    declared = declared_schedules(settings)
    ids = {job.schedule_id: full_id(job.schedule_id, settings) for job in declared}
    with serving_pages() as pages, ExitStack() as workers:
        world = await seed_world(engine, settings, pages)
        await apply(client, settings, declared)
        for _ in range(WORKERS):
            workers.enter_context(running_worker(settings, CRAWLER_ALLOWED_HOSTS=CRAWL_LOOPBACK))
        first_wave = [i for job, i in ids.items() if job != "learn-stats-weekly"]
        fault_report.injected(
            f"{WORKERS} worker processes; {TRIGGERS} triggers on each of {len(ids)} schedules "
            "at once (weekly in a second wave, after the daily streak resets)"
        )
        await storm(client, first_wave)
        await settle(client, first_wave)
        await wait_for(lambda: everything_delivered(engine, world), within=180, interval=0.5)
        await storm(client, [ids["learn-stats-weekly"]])
        await settle(client, [ids["learn-stats-weekly"]])

        runs = {job: await scheduled_runs(client, i) for job, i in ids.items()}
        await verify_effects(engine, client, ids, world, fault_report)
        await verify_not_stuck(client, ids, fault_report)

    total_runs = sum(len(r) for r in runs.values())
    fault_report.measured(
        f"{total_runs} runs for {TRIGGERS * len(ids)} triggers (overlap SKIP drops triggers "
        "while a run is going): " + ", ".join(f"{job} {len(r)}" for job, r in runs.items())
    )
    for job, job_runs in runs.items():
        # Two triggers in one second share a workflow id (the schedule appends the time to
        # the second); they are still two runs, told apart by run id.
        run_ids = [(run.id, run.run_id) for run in job_runs]
        assert len(run_ids) == len(set(run_ids)), job
        assert 1 <= len(job_runs) <= TRIGGERS + 5, job  # + natural ticks during the test
    fault_report.verified("every run has its own run id; every run completed")


async def verify_effects(
    engine: AsyncEngine, client: Client, ids: dict[str, str], world: World, report: FaultReport
) -> None:
    failed_sessions = await summed(client, ids["cleanup-stale-sessions"], "failed_sessions")
    assert failed_sessions == world.stale_sessions
    assert (
        await scalar(
            engine, "SELECT count(*) FROM sessions WHERE status IN ('recording', 'paused')"
        )
        == world.fresh_sessions
    )
    report.verified(f"cleanup: {failed_sessions} stale sessions failed in total, once each")

    gauge = await scalar(
        engine, "SELECT value FROM job_gauges WHERE name = 'mindhit_sessions_active'"
    )
    assert gauge == world.fresh_sessions
    report.verified("update-metrics: stored gauge equals the SQL count of active sessions")

    failed_sets = await summed(client, ids["question-set-cleanup"], "failed_sets")
    failed_notes = await scalar(
        engine, "SELECT count(*) FROM notifications WHERE kind = 'question_set.failed'"
    )
    assert failed_sets == failed_notes == len(world.stale_sets)
    report.verified(f"question-set-cleanup: {failed_sets} sets failed, {failed_notes} notices")

    retried = await summed(client, ids["question-set-retry"], "retried_sets")
    assert retried == len(world.retry_sets)
    generations = [w async for w in client.list_workflows("WorkflowType = 'QuestionGeneration'")]
    assert len(generations) == len(world.retry_sets)
    assert await scalar(
        engine,
        "SELECT count(*) FROM question_sets WHERE id = ANY(:ids) AND status = 'completed' "
        "AND attempt = 2 AND retry_count = 3",
        ids=world.retry_sets,
    ) == len(world.retry_sets)
    assert (
        await scalar(
            engine,
            "SELECT count(DISTINCT attempt) FROM questions WHERE question_set_id = ANY(:ids)",
            ids=world.retry_sets,
        )
        == 1
    )
    completed_notes = await scalar(
        engine, "SELECT count(*) FROM notifications WHERE kind = 'question_set.completed'"
    )
    assert completed_notes == len(world.retry_sets)
    report.verified(
        f"question-set-retry: {retried} sets retried once, one generation workflow and one "
        "completed notice each"
    )

    deleted = await summed(client, ids["source-cleanup"], "deleted_sources")
    assert deleted == len(world.doomed_sources)
    assert await scalar(engine, "SELECT count(*) FROM sources") == 1
    report.verified(f"source-cleanup: {deleted} sources deleted, the used one kept")

    reset = await summed(client, ids["learn-stats-daily"], "reset_streaks")
    assert reset == len(world.broken_streak_users)
    corrected = await summed(client, ids["learn-stats-weekly"], "corrected_users")
    assert corrected == len(world.corrupt_total_users)
    assert (
        await scalar(
            engine,
            "SELECT count(*) FROM learn_stats s WHERE s.total_solved <> (SELECT count(*) FROM "
            "learning_records r WHERE r.user_id = s.user_id AND r.stats_applied)",
        )
        == 0
    )
    report.verified(
        f"learn-stats: {reset} streaks reset, {corrected} totals corrected, every total equals "
        "the SQL count of its records"
    )

    relays = await running_workflows(client, "WorkflowType = 'OutboxRelay'")
    assert len(relays) == 1
    per_user = await scalar(
        engine,
        "SELECT array_agg(total_solved ORDER BY user_id) FROM learn_stats "
        "WHERE user_id = ANY(:ids)",
        ids=world.relay_users,
    )
    assert per_user == [world.records_per_relay_user] * len(world.relay_users)
    report.verified("outbox-relay: one relay running; each learning event counted once")

    mind_maps = await scalar(
        engine,
        "SELECT array_agg(c ORDER BY session_id) FROM (SELECT session_id, count(*) c "
        "FROM mind_maps GROUP BY session_id) m",
    )
    notes = await scalar(
        engine, "SELECT count(*) FROM notifications WHERE kind = 'session.completed'"
    )
    assert mind_maps == [1] * len(world.processing_sessions)
    assert notes == len(world.processing_sessions)
    report.verified("ai-processing: one mind map and one notice per session")


async def verify_not_stuck(client: Client, ids: dict[str, str], report: FaultReport) -> None:
    async with asyncio.timeout(120):
        for schedule_id in ids.values():
            handle = client.get_schedule_handle(schedule_id)
            before = (await handle.describe()).info.num_actions
            await handle.trigger()
            await wait_for_actions(client, schedule_id, before + 1)
            description = await wait_until_idle(client, schedule_id)
            assert not description.info.running_actions
    report.verified("afterwards every schedule still starts and finishes a run at once")
