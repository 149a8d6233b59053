"""Scenario 2: a worker process is SIGKILLed while every batch job is in the middle of its work
(stale-session cleanup, source cleanup, learn-stats daily and weekly, the outbox relay, session
processing). Another worker finishes each job; the data equals a reference computed in SQL and
no effect (state change, notification, delivered event) happens twice."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle

from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing.contracts import AiProcessingInput
from learning_platform.jobs.browsing_sessions.contracts import CleanupStaleSessionsInput
from learning_platform.jobs.learn_stats.contracts import LearnStatsDailyInput, LearnStatsWeeklyInput
from learning_platform.jobs.outbox_relay.contracts import OutboxRelayInput
from learning_platform.jobs.question_sets.contracts import SourceCleanupInput
from learning_platform.storage import LocalObjectStorage
from tests.ai_processing_helpers import add_processing_session
from tests.factories import add_user
from tests.faults.held_pages import serving_held_pages
from tests.faults.report import FaultReport
from tests.faults.world import execute, local_today, scalar, week_start
from tests.learning_helpers import wait_for
from tests.question_set_factories import add_source
from tests.worker_process import running_worker

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

SCALE = int(os.environ.get("FAULTS_KILL_SCALE", "1"))
STALE_SESSIONS = 20_000 * SCALE
DOOMED_SOURCES = 600 * SCALE
BROKEN_USERS = 20_000 * SCALE
CORRUPT_USERS = 2_000 * SCALE  # every 11th of the B + C users (see seed_learners)
assert (BROKEN_USERS + CORRUPT_USERS) // 11 == CORRUPT_USERS
RELAY_RECORDS = 20_000 * SCALE
PROCESSING_SESSIONS = 12
SMALL_BATCHES = {
    "CLEANUP_BATCH_SIZE": "50",
    "SOURCE_CLEANUP_BATCH_SIZE": "5",
    "LEARN_STATS_BATCH_SIZE": "50",
    "OUTBOX_BATCH_SIZE": "50",
    "CRAWLER_ALLOWED_HOSTS": '["127.0.0.1"]',
}


async def seed(engine: AsyncEngine, settings: Settings, pages: str) -> None:
    owner = await add_user(engine, "owner@example.com")
    await execute(
        engine,
        "INSERT INTO sessions (user_id, status, updated_at) SELECT :u, 'recording', "
        "now() - interval '2 days' - make_interval(secs => n) FROM generate_series(1, :n) n",
        u=owner,
        n=STALE_SESSIONS,
    )
    await execute(
        engine, "INSERT INTO sessions (user_id, status) SELECT :u, 'paused' FROM "
        "generate_series(1, 7)", u=owner,
    )  # fmt: skip
    storage = LocalObjectStorage(settings.data_dir / "objects")
    for n in range(DOOMED_SOURCES):
        await storage.put(f"doomed/{n}.txt", b"old notes", "text/plain")
    await execute(
        engine,
        "INSERT INTO sources (user_id, title, storage_key, content_type, size_bytes, status, "
        "deletion_requested_at) SELECT :u, 'old', 'doomed/' || (n - 1) || '.txt', 'text/plain', "
        "9, 'delete_pending', now() - interval '1 day' FROM generate_series(1, :n) n",
        u=owner,
        n=DOOMED_SOURCES,
    )
    await storage.put("kept.txt", b"in use", "text/plain")
    await add_source(engine, owner, "kept.txt")
    await seed_learners(engine, settings)
    for n in range(PROCESSING_SESSIONS):
        await add_processing_session(engine, owner, [f"{pages}/article/{n}", f"{pages}/held/{n}"])


async def seed_learners(engine: AsyncEngine, settings: Settings) -> None:
    """Among users 2 .. B+C+1, every 11th has corrupt totals (weekly corrects them) and the
    others broken streaks (daily resets them). Both jobs walk users in id order, so spreading
    their users over the walk makes the rows they changed a measure of how far each got (with
    the corrupt users first, weekly had changed them all, mid-walk, before the kill). Then
    learning records with their pending `learning.recorded` events (the relay counts them)."""
    today = local_today(settings)
    await execute(
        engine,
        "INSERT INTO users (email, display_name) SELECT 'u' || n || '@x', 'u' FROM "
        "generate_series(1, :n) n",
        n=BROKEN_USERS + CORRUPT_USERS + 1000,
    )
    await execute(
        engine,
        "INSERT INTO learning_days (user_id, day) SELECT u, CAST(:today AS date) - d "
        "FROM generate_series(2, CAST(:c AS int) + :b + 1) u, generate_series(5, 7) d "
        "WHERE u % 11 <> 0",
        today=today,
        b=BROKEN_USERS,
        c=CORRUPT_USERS,
    )
    await execute(
        engine,
        "INSERT INTO learning_records (user_id, question_id, solved_at, correct, stats_applied) "
        "SELECT user_id, 1, day + time '12:00', true, true FROM learning_days",
    )
    await execute(
        engine,
        "INSERT INTO learn_stats (user_id, current_streak, longest_streak, last_learned_date, "
        "total_solved, total_correct, week_start) SELECT u, 3, 3, CAST(:today AS date) - 5, 3, "
        "3, :w FROM generate_series(2, CAST(:c AS int) + :b + 1) u WHERE u % 11 <> 0",
        today=today,
        w=week_start(today),
        b=BROKEN_USERS,
        c=CORRUPT_USERS,
    )
    await execute(
        engine,
        "INSERT INTO learn_stats (user_id, total_solved, total_correct, week_start) "
        "SELECT u, 99, 99, :w FROM generate_series(2, CAST(:c AS int) + :b + 1) u WHERE u % 11 = 0",
        w=week_start(today),
        b=BROKEN_USERS,
        c=CORRUPT_USERS,
    )
    # The app's way (record + event in one transaction), set-based: learners are the last
    # thousand users, so their events interleave across many aggregates.
    await execute(
        engine,
        """
        WITH records AS (
            INSERT INTO learning_records (user_id, question_id, solved_at, correct)
            SELECT :first + (n % 1000), n, now(), n % 3 <> 0 FROM generate_series(1, :n) n
            RETURNING id, user_id)
        INSERT INTO outbox_events (aggregate_type, aggregate_id, event_type, payload)
        SELECT 'user', user_id::text, 'learning.recorded',
               jsonb_build_object('learning_record_id', id) FROM records ORDER BY id
        """,
        first=BROKEN_USERS + CORRUPT_USERS + 2,
        n=RELAY_RECORDS,
    )


PROGRESS = {
    "cleanup-stale-sessions": "SELECT count(*) FROM sessions WHERE status = 'failed'",
    "source-cleanup": f"SELECT {DOOMED_SOURCES + 1} - count(*) FROM sources",
    "learn-stats-daily": "SELECT count(*) FROM learn_stats WHERE current_streak = 0 "
    "AND longest_streak = 3",
    "learn-stats-weekly": "SELECT count(*) FROM learn_stats WHERE total_solved = 0",
    "outbox-relay": f"SELECT {RELAY_RECORDS} - count(*) FROM outbox_events",
    "session-processing": "SELECT count(*) FROM page_crawls",
}
TOTALS = {
    "cleanup-stale-sessions": STALE_SESSIONS,
    "source-cleanup": DOOMED_SOURCES,
    "learn-stats-daily": BROKEN_USERS,
    "learn-stats-weekly": CORRUPT_USERS,
    "outbox-relay": RELAY_RECORDS,
    "session-processing": PROCESSING_SESSIONS * 2,
}


async def progress(engine: AsyncEngine) -> dict[str, int]:
    return {job: int(await scalar(engine, sql)) for job, sql in PROGRESS.items()}


async def start_jobs(client: Client, settings: Settings) -> dict[str, WorkflowHandle[Any, Any]]:
    queue, tag = settings.task_queue, uuid.uuid4().hex[:6]
    starts: dict[str, tuple[str, Any]] = {
        "cleanup-stale-sessions": ("CleanupStaleSessions", CleanupStaleSessionsInput()),
        "source-cleanup": ("SourceCleanup", SourceCleanupInput()),
        "learn-stats-daily": ("LearnStatsDaily", LearnStatsDailyInput()),
        "learn-stats-weekly": ("LearnStatsWeekly", LearnStatsWeeklyInput()),
        "session-processing": ("AiProcessing", AiProcessingInput()),
        "outbox-relay": ("OutboxRelay", OutboxRelayInput(drain_seconds=600, drains_per_run=1)),
    }
    return {
        job: await client.start_workflow(workflow, arg, id=f"{job}-{tag}", task_queue=queue)
        for job, (workflow, arg) in starts.items()
    }


async def test_s2_sigkill_mid_batch_for_every_batch_job(
    engine: AsyncEngine, client: Client, settings: Settings, fault_report: FaultReport
) -> None:
    with serving_held_pages() as (pages, release_pages):
        await seed(engine, settings, pages)
        await execute(engine, "ANALYZE")
        with running_worker(settings, **SMALL_BATCHES) as doomed:
            jobs = await start_jobs(client, settings)

            async def all_started() -> bool:
                return all((await progress(engine)).values())

            await wait_for(all_started, within=90, interval=0.05)
            at_kill = await hold_writes_and_kill(engine, doomed)
        release_pages.set()
        fault_report.injected(
            "SIGKILL of the only worker while all six batch jobs ran at once (writes held by a "
            "table lock at the kill, so every job is mid-way): "
            + ", ".join(f"{job} {at_kill[job]}/{TOTALS[job]}" for job in TOTALS)
        )
        for job, done in at_kill.items():
            assert 0 < done < TOTALS[job], f"{job} was not mid-way at the kill: {done}"

        with running_worker(settings, **SMALL_BATCHES):
            results = await finish(engine, jobs)
    await verify(engine, results, fault_report)


async def hold_writes_and_kill(engine: AsyncEngine, doomed: Any) -> dict[str, int]:
    """Lock the jobs' tables against writes, kill the worker, then let go."""
    blocker = await engine.connect()
    await blocker.begin()
    try:
        # The relay's transactions lock outbox rows before they write learn_stats: taking the
        # tables in that order too cannot deadlock with them.
        await blocker.execute(
            text("LOCK TABLE outbox_events, learn_stats, sessions, sources IN EXCLUSIVE MODE")
        )
        at_kill = {
            job: int((await blocker.execute(text(sql))).scalar_one())
            for job, sql in PROGRESS.items()
        }
        await asyncio.sleep(0.5)  # the jobs' next writes queue up behind the lock
        doomed.kill()
    finally:
        await blocker.rollback()
        await blocker.close()
    return at_kill


async def finish(engine: AsyncEngine, jobs: dict[str, WorkflowHandle[Any, Any]]) -> dict[str, Any]:
    async def relay_drained() -> bool:
        return await scalar(engine, "SELECT count(*) FROM outbox_events") == 0

    async def sessions_done() -> bool:
        return (
            await scalar(engine, "SELECT count(*) FROM sessions WHERE status = 'processing'") == 0
        )

    async with asyncio.timeout(240):
        batch_jobs = {job: h for job, h in jobs.items() if job != "outbox-relay"}
        results = dict(
            zip(
                batch_jobs,
                await asyncio.gather(*(h.result() for h in batch_jobs.values())),
                strict=True,
            )
        )
        await wait_for(relay_drained, within=120, interval=0.2)
        await wait_for(sessions_done, within=120, interval=0.2)
    return results


async def verify(engine: AsyncEngine, results: dict[str, Any], report: FaultReport) -> None:
    assert (
        await scalar(engine, "SELECT count(*) FROM sessions WHERE status = 'failed'")
        == STALE_SESSIONS
    )
    assert await scalar(engine, "SELECT count(*) FROM sessions WHERE status = 'paused'") == 7
    report.verified(f"cleanup: exactly the {STALE_SESSIONS} stale sessions failed")

    assert await scalar(engine, "SELECT array_agg(storage_key) FROM sources") == ["kept.txt"]
    report.verified(f"source-cleanup: all {DOOMED_SOURCES} doomed sources gone, the kept one kept")

    # Each user's row is written once by whichever of daily/weekly reached it first, so its
    # version went up by exactly one: no batch was applied twice across the kill.
    stats = await scalar(
        engine,
        "SELECT array_agg(DISTINCT (version, current_streak, total_solved)::text) "
        "FROM learn_stats WHERE user_id BETWEEN 2 AND :last",
        last=BROKEN_USERS + CORRUPT_USERS + 1,
    )
    assert sorted(stats) == ["(1,0,0)", "(1,0,3)"], stats
    report.verified(
        f"learn-stats: {BROKEN_USERS} streaks reset and {CORRUPT_USERS} totals corrected, "
        "each row written exactly once (version + 1)"
    )

    mismatched = await scalar(
        engine,
        """
        SELECT count(*) FROM learn_stats s
          LEFT JOIN (SELECT user_id, count(*) AS solved, count(*) FILTER (WHERE correct) AS ok
                       FROM learning_records GROUP BY user_id) r USING (user_id)
         WHERE (s.total_solved, s.total_correct)
               IS DISTINCT FROM (coalesce(r.solved, 0), coalesce(r.ok, 0))
        """,
    )
    unapplied = await scalar(
        engine, "SELECT count(*) FROM learning_records WHERE NOT stats_applied"
    )
    assert (mismatched, unapplied) == (0, 0)
    assert await scalar(engine, "SELECT count(*) FROM outbox_dead_letters") == 0
    report.verified(
        f"outbox relay: all {RELAY_RECORDS} events delivered, every user's totals equal the SQL "
        "count of their records (none counted twice, none lost), no dead letters"
    )

    per_session = await scalar(
        engine,
        "SELECT array_agg(DISTINCT n) FROM (SELECT s.id, (SELECT count(*) FROM mind_maps m "
        "WHERE m.session_id = s.id) + (SELECT count(*) FROM notifications n WHERE "
        "n.payload->>'session_id' = s.id::text) AS n FROM sessions s WHERE s.status = "
        "'completed') x",
    )
    completed = await scalar(engine, "SELECT count(*) FROM sessions WHERE status = 'completed'")
    assert completed == PROCESSING_SESSIONS
    assert per_session == [2], per_session
    report.verified(
        f"session processing: {completed} sessions completed, one mind map and one notice each"
    )

    reported = {
        "cleanup-stale-sessions": results["cleanup-stale-sessions"]["failed_sessions"],
        "source-cleanup": results["source-cleanup"]["deleted_sources"],
        "learn-stats-daily": results["learn-stats-daily"]["reset_streaks"],
        "learn-stats-weekly": results["learn-stats-weekly"]["corrected_users"],
    }
    # Each batch commits its count with its changes (job_checkpoints), so the runs report
    # what the killed attempt changed too. A user's row counts for whichever of daily and
    # weekly wrote it (see above), so only their sum is fixed.
    assert reported["cleanup-stale-sessions"] == STALE_SESSIONS
    assert reported["source-cleanup"] == DOOMED_SOURCES
    stats_total = reported["learn-stats-daily"] + reported["learn-stats-weekly"]
    assert stats_total == BROKEN_USERS + CORRUPT_USERS
    report.verified(
        "the runs' reported counts include what the killed attempt changed: "
        + ", ".join(f"{job} {n}" for job, n in reported.items())
        + f" (daily + weekly = {stats_total})"
    )
