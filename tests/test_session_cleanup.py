from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.batches import checkpoint_key
from activities.browsing_sessions import BrowsingSessionActivities
from learning_platform.core.batches import Checkpoint, encode_position, save_checkpoint
from learning_platform.core.settings import Settings
from learning_platform.jobs.browsing_sessions.contracts import (
    CleanupStaleSessionsInput,
    CleanupStaleSessionsResult,
    FailStaleSessionsParams,
)
from tests.factories import activity_of_run, add_session, add_user, session_statuses
from workflows.browsing_sessions import CleanupStaleSessions

SCHEDULED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


async def run_cleanup(
    client: Client, worker: Worker, scheduled_time: datetime = SCHEDULED
) -> CleanupStaleSessionsResult:
    return await client.execute_workflow(
        CleanupStaleSessions.run,
        CleanupStaleSessionsInput(scheduled_time=scheduled_time),
        id=f"cleanup-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )


async def test_fails_only_active_sessions_older_than_24h_before_the_scheduled_time(
    engine: AsyncEngine, client: Client, worker: Worker
) -> None:
    user = await add_user(engine)
    day = timedelta(hours=24)
    tick = timedelta(microseconds=1)
    stale_recording = await add_session(engine, user, "recording", SCHEDULED - day - tick)
    stale_paused = await add_session(engine, user, "paused", SCHEDULED - day - timedelta(days=30))
    exactly_24h = await add_session(engine, user, "recording", SCHEDULED - day)
    fresh = await add_session(engine, user, "paused", SCHEDULED - day + tick)
    # Updated after the scheduled time (a caught-up run): never stale for this run.
    after_schedule = await add_session(engine, user, "recording", SCHEDULED + timedelta(hours=1))
    others = {
        status: await add_session(engine, user, status, SCHEDULED - timedelta(days=90))
        for status in ("processing", "completed", "failed")
    }

    result = await run_cleanup(client, worker)

    assert result.failed_sessions == 2
    assert result.cutoff == SCHEDULED - day
    statuses = await session_statuses(engine)
    assert statuses[stale_recording] == "failed"
    assert statuses[stale_paused] == "failed"
    assert statuses[exactly_24h] == "recording"
    assert statuses[fresh] == "paused"
    assert statuses[after_schedule] == "recording"
    assert {statuses[i] for i in others.values()} == {"processing", "completed", "failed"}
    async with engine.connect() as conn:
        reason = await conn.scalar(
            text("SELECT failure_reason FROM sessions WHERE id = :id"), {"id": stale_recording}
        )
    assert reason is not None and "24 hours" in reason


async def test_scheduled_time_not_wall_clock_decides(
    engine: AsyncEngine, client: Client, worker: Worker
) -> None:
    user = await add_user(engine)
    # Two days old by the wall clock, but only 12 h old at a scheduled time 36 h ago.
    session = await add_session(engine, user, "recording", datetime.now(UTC) - timedelta(days=2))

    late_run = await run_cleanup(client, worker, datetime.now(UTC) - timedelta(hours=36))
    assert late_run.failed_sessions == 0
    assert (await session_statuses(engine))[session] == "recording"

    on_time = await run_cleanup(client, worker, datetime.now(UTC))
    assert on_time.failed_sessions == 1


async def test_second_run_changes_nothing_and_batches_cover_everything(
    engine: AsyncEngine, client: Client, worker: Worker, settings: Settings
) -> None:
    user = await add_user(engine)
    count = settings.cleanup_batch_size * 2 + 7
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO sessions (user_id, status, updated_at) "
                "SELECT :u, 'recording', :t FROM generate_series(1, :n)"
            ),
            {"u": user, "t": SCHEDULED - timedelta(days=3), "n": count},
        )

    first = await run_cleanup(client, worker)
    second = await run_cleanup(client, worker)

    assert first.failed_sessions == count
    assert second.failed_sessions == 0
    assert set((await session_statuses(engine)).values()) == {"failed"}


async def test_a_retried_sweep_continues_after_its_last_committed_batch(
    engine: AsyncEngine, settings: Settings
) -> None:
    user = await add_user(engine)
    old = SCHEDULED - timedelta(days=2)
    first, second, third = [await add_session(engine, user, "recording", old) for _ in range(3)]
    activities = BrowsingSessionActivities(engine, settings.cleanup_batch_size)
    environment = ActivityEnvironment()
    # As the previous attempt left it: one session failed, position at that session.
    async with engine.begin() as conn:
        position = ("recording", old, first)
        await save_checkpoint(conn, checkpoint_key(environment.info), Checkpoint(1, position))
    heartbeats: list[tuple[Any, ...]] = []
    environment.on_heartbeat = lambda *details: heartbeats.append(details)

    total = await environment.run(
        activities.fail_stale_sessions,
        FailStaleSessionsParams(cutoff=SCHEDULED - timedelta(hours=24), reason="stale"),
    )

    assert total == 3  # the earlier attempt's one plus the two after its position
    statuses = await session_statuses(engine)
    assert statuses[first] == "recording"  # before the position: not walked again
    assert statuses[second] == statuses[third] == "failed"
    assert heartbeats[-1] == (3, encode_position(("recording", old, third)))


async def test_a_checkpoint_an_older_release_wrote_is_walked_again_with_its_count(
    engine: AsyncEngine, settings: Settings
) -> None:
    """A deploy can hand a running sweep's retry to the new code: the earlier attempt's
    position is in the old format, and the retry walks again from the start (exact, since the
    rows it changed no longer match) instead of failing on it."""
    user = await add_user(engine)
    old = SCHEDULED - timedelta(days=2)
    first = await add_session(engine, user, "recording", old)
    await add_session(engine, user, "recording", old)
    environment = ActivityEnvironment()
    # As the previous release left it: `first` failed, its position kept per status.
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE sessions SET status = 'failed' WHERE id = :id"), {"id": first}
        )
        await conn.execute(
            text(
                "INSERT INTO job_checkpoints (activity_key, total, position) "
                "VALUES (:key, 1, CAST(:position AS jsonb))"
            ),
            {
                "key": checkpoint_key(environment.info),
                "position": json.dumps({"recording": [old.isoformat(), first]}),
            },
        )

    total = await environment.run(
        BrowsingSessionActivities(engine, settings.cleanup_batch_size).fail_stale_sessions,
        FailStaleSessionsParams(cutoff=SCHEDULED - timedelta(hours=24), reason="stale"),
    )

    assert total == 2
    assert set((await session_statuses(engine)).values()) == {"failed"}


class WorkerKilled(Exception):
    pass


async def test_a_retry_counts_what_a_killed_attempt_committed_past_its_last_heartbeat(
    engine: AsyncEngine,
) -> None:
    """Temporal holds no heartbeat of the killed attempt (the SDK throttles them), yet the
    retry reports every session the run failed, each once."""
    user = await add_user(engine)
    old = SCHEDULED - timedelta(days=2)
    sessions = [await add_session(engine, user, "paused", old) for _ in range(5)]
    activities = BrowsingSessionActivities(engine, batch_size=1)
    params = FailStaleSessionsParams(cutoff=SCHEDULED - timedelta(hours=24), reason="stale")
    killed = ActivityEnvironment()
    beats: list[Any] = []

    def die_on_the_third_beat(*details: Any) -> None:
        beats.append(details)
        if len(beats) == 3:  # inside the third batch's transaction: it never commits
            raise WorkerKilled

    killed.on_heartbeat = die_on_the_third_beat
    with pytest.raises(WorkerKilled):
        await killed.run(activities.fail_stale_sessions, params)
    failed_before = list((await session_statuses(engine)).values()).count("failed")

    total = await ActivityEnvironment().run(activities.fail_stale_sessions, params)

    assert 0 < failed_before < len(sessions)
    assert total == len(sessions)
    assert set((await session_statuses(engine)).values()) == {"failed"}


async def test_concurrent_sweeps_split_the_rows_without_doubling(
    engine: AsyncEngine, settings: Settings
) -> None:
    user = await add_user(engine)
    count = settings.cleanup_batch_size * 6
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO sessions (user_id, status, updated_at) "
                "SELECT :u, CASE WHEN n % 2 = 0 THEN 'recording' ELSE 'paused' END, :t "
                "FROM generate_series(1, :n) n"
            ),
            {"u": user, "t": SCHEDULED - timedelta(days=3), "n": count},
        )
    activities = BrowsingSessionActivities(engine, settings.cleanup_batch_size)
    params = FailStaleSessionsParams(cutoff=SCHEDULED - timedelta(hours=24), reason="stale")

    totals = await asyncio.gather(
        *(activity_of_run(run).run(activities.fail_stale_sessions, params) for run in range(3))
    )

    assert sum(totals) == count
    assert set((await session_statuses(engine)).values()) == {"failed"}


async def test_the_sweep_walks_both_statuses_in_one_pass_in_update_order(
    engine: AsyncEngine,
) -> None:
    """Recording and paused sessions in one walk by (updated_at, id): each batch takes the
    oldest rows of either status, and every position names the last status swept."""
    user = await add_user(engine)
    base = SCHEDULED - timedelta(days=3)
    statuses = ["paused", "recording", "recording", "paused", "recording"]
    sessions = [
        await add_session(engine, user, status, base + timedelta(minutes=i))
        for i, status in enumerate(statuses)
    ]
    environment = ActivityEnvironment()
    heartbeats: list[tuple[Any, ...]] = []
    environment.on_heartbeat = lambda *details: heartbeats.append(details)

    total = await environment.run(
        BrowsingSessionActivities(engine, batch_size=2).fail_stale_sessions,
        FailStaleSessionsParams(cutoff=SCHEDULED - timedelta(hours=24), reason="stale"),
    )

    assert total == 5
    assert set((await session_statuses(engine)).values()) == {"failed"}
    last = [("recording", base + timedelta(minutes=i), sessions[i]) for i in (1, 3, 4)]
    assert heartbeats == [(2, encode_position(last[0])), (4, encode_position(last[1])),
                          (5, encode_position(last[2]))]  # fmt: skip


async def test_a_position_inside_an_earlier_status_from_an_older_release_walks_again(
    engine: AsyncEngine, settings: Settings
) -> None:
    """The status-by-status walk of earlier releases stood at ("paused", t, id) with no
    recording session done yet; resuming from it as a position of the merged walk would skip
    the recording sessions before (t, id). The retry walks again from the start instead, with
    the checkpoint's count."""
    user = await add_user(engine)
    old = SCHEDULED - timedelta(days=2)
    done = await add_session(engine, user, "paused", old + timedelta(minutes=2))
    recording_before = await add_session(engine, user, "recording", old)
    paused_after = await add_session(engine, user, "paused", old + timedelta(minutes=3))
    environment = ActivityEnvironment()
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE sessions SET status = 'failed' WHERE id = :id"), {"id": done}
        )
        position = ("paused", old + timedelta(minutes=2), done)
        await save_checkpoint(conn, checkpoint_key(environment.info), Checkpoint(1, position))

    total = await environment.run(
        BrowsingSessionActivities(engine, settings.cleanup_batch_size).fail_stale_sessions,
        FailStaleSessionsParams(cutoff=SCHEDULED - timedelta(hours=24), reason="stale"),
    )

    assert total == 3
    statuses = await session_statuses(engine)
    assert statuses[recording_before] == statuses[paused_after] == "failed"
