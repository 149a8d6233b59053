from __future__ import annotations

import asyncio
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.batches import checkpoint_key
from activities.question_sets import QuestionSetActivities
from learning_platform.core.batches import Checkpoint, encode_position, save_checkpoint
from learning_platform.core.settings import Settings
from learning_platform.jobs.question_sets import queries as question_sets
from learning_platform.jobs.question_sets.contracts import (
    FailStaleQuestionSetsParams,
    QuestionSetCleanupInput,
    QuestionSetCleanupResult,
    QuestionSetRetryInput,
    QuestionSetRetryResult,
)
from learning_platform.scheduling.declarations import declared_schedules
from learning_platform.scheduling.sync import build_schedule
from learning_platform.storage import build_storage
from tests.factories import activity_of_run, add_user
from tests.question_set_factories import add_question_set, add_source, question_set, rows
from workflows.question_sets import QuestionSetCleanup, QuestionSetRetry

SCHEDULED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
HOUR = timedelta(minutes=60)
TICK = timedelta(microseconds=1)


def question_set_activities(engine: AsyncEngine, settings: Settings) -> QuestionSetActivities:
    return QuestionSetActivities(engine, build_storage(settings), settings)


async def owner_and_source(engine: AsyncEngine) -> tuple[int, int]:
    user = await add_user(engine)
    return user, await add_source(engine, user, f"users/{user}/notes.txt")


async def run_cleanup(
    client: Client, worker: Worker, scheduled: datetime = SCHEDULED
) -> QuestionSetCleanupResult:
    return await client.execute_workflow(
        QuestionSetCleanup.run,
        QuestionSetCleanupInput(scheduled_time=scheduled),
        id=f"qs-cleanup-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )


async def run_retry(client: Client, worker: Worker, batch_size: int) -> QuestionSetRetryResult:
    return await client.execute_workflow(
        QuestionSetRetry.run,
        QuestionSetRetryInput(batch_size=batch_size),
        id=f"qs-retry-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )


async def test_cleanup_fails_sets_pending_more_than_60_minutes_before_the_scheduled_time(
    engine: AsyncEngine, client: Client, worker: Worker
) -> None:
    user, source = await owner_and_source(engine)
    stale = await add_question_set(engine, user, source, requested_at=SCHEDULED - HOUR - TICK)
    exactly_60 = await add_question_set(engine, user, source, requested_at=SCHEDULED - HOUR)
    fresh = await add_question_set(engine, user, source, requested_at=SCHEDULED - HOUR + TICK)
    later = await add_question_set(engine, user, source, requested_at=SCHEDULED + HOUR)
    old_done = {
        status: await add_question_set(
            engine, user, source, status=status, requested_at=SCHEDULED - 5 * HOUR
        )
        for status in ("completed", "failed")
    }

    result = await run_cleanup(client, worker)

    assert (result.failed_sets, result.cutoff) == (1, SCHEDULED - HOUR)
    failed = await question_set(engine, stale)
    assert (failed.status, failed.version, failed.retryable) == ("failed", 2, True)
    assert failed.failure_reason == "generation timed out (pending for over 60 minutes)"
    for untouched in (exactly_60, fresh, later):
        assert (await question_set(engine, untouched)).status == "pending"
    for status, set_id in old_done.items():
        assert (await question_set(engine, set_id)).version == 1, status
    assert (await run_cleanup(client, worker)).failed_sets == 0


async def test_cleanup_notifies_only_sets_that_will_not_be_retried(
    engine: AsyncEngine, client: Client, worker: Worker
) -> None:
    user, source = await owner_and_source(engine)
    long_ago = SCHEDULED - 3 * HOUR
    will_retry = await add_question_set(engine, user, source, requested_at=long_ago, retry_count=2)
    final = await add_question_set(
        engine, user, source, requested_at=long_ago, retry_count=3, attempt=4
    )

    assert (await run_cleanup(client, worker)).failed_sets == 2

    notes = await rows(engine, "SELECT user_id, kind, payload, dedupe_key FROM notifications")
    assert [(n.user_id, n.kind, n.dedupe_key) for n in notes] == [
        (user, "question_set.failed", f"question-set-{final}-attempt-4-failed")
    ]
    assert notes[0].payload["question_set_id"] == final
    assert (await question_set(engine, will_retry)).status == "failed"


async def test_cleanup_drains_more_than_one_batch(
    engine: AsyncEngine, client: Client, worker: Worker, settings: Settings
) -> None:
    user, source = await owner_and_source(engine)
    count = settings.cleanup_batch_size * 2 + 3
    for _ in range(count):
        await add_question_set(engine, user, source, requested_at=SCHEDULED - 2 * HOUR)

    assert (await run_cleanup(client, worker)).failed_sets == count
    assert await rows(engine, "SELECT 1 FROM question_sets WHERE status = 'pending'") == []


async def test_a_retried_cleanup_continues_after_its_last_committed_batch(
    engine: AsyncEngine, settings: Settings
) -> None:
    user, source = await owner_and_source(engine)
    old = SCHEDULED - 2 * HOUR
    first, second, third = [
        await add_question_set(engine, user, source, requested_at=old) for _ in range(3)
    ]
    environment = ActivityEnvironment()
    # As the previous attempt left it: one set failed, position at that set.
    async with engine.begin() as conn:
        position = (old, first)
        await save_checkpoint(conn, checkpoint_key(environment.info), Checkpoint(1, position))
    heartbeats: list[tuple[Any, ...]] = []
    environment.on_heartbeat = lambda *details: heartbeats.append(details)

    total = await environment.run(
        question_set_activities(engine, settings).fail_stale_question_sets,
        FailStaleQuestionSetsParams(cutoff=SCHEDULED - HOUR, reason="timed out"),
    )

    assert total == 3  # the earlier attempt's one plus the two after its position
    assert (await question_set(engine, first)).status == "pending"  # before it: not walked again
    for set_id in (second, third):
        assert (await question_set(engine, set_id)).status == "failed"
    assert heartbeats[-1] == (3, encode_position((old, third)))


async def test_concurrent_cleanups_fail_and_notify_each_set_once(
    engine: AsyncEngine, settings: Settings
) -> None:
    user, source = await owner_and_source(engine)
    count = settings.cleanup_batch_size * 6
    await rows(
        engine,
        "INSERT INTO question_sets (user_id, source_id, title, requested_at, retry_count, attempt) "
        "SELECT :u, :s, 'Quiz', :t, 3, 4 FROM generate_series(1, :n) RETURNING id",
        u=user, s=source, t=SCHEDULED - 2 * HOUR, n=count,
    )  # fmt: skip
    activities = question_set_activities(engine, settings)
    params = FailStaleQuestionSetsParams(cutoff=SCHEDULED - HOUR, reason="timed out")

    totals = await asyncio.gather(
        *(activity_of_run(run).run(activities.fail_stale_question_sets, params) for run in range(3))
    )

    assert sum(totals) == count
    sets = await rows(engine, "SELECT status, version FROM question_sets")
    assert {(s.status, s.version) for s in sets} == {("failed", 2)}
    assert len(await rows(engine, "SELECT 1 FROM notifications")) == count


async def test_retry_moves_failed_sets_to_a_new_requested_attempt_up_to_three_times(
    engine: AsyncEngine, client: Client, worker: Worker
) -> None:
    user, source = await owner_and_source(engine)
    by_retries = {
        n: await add_question_set(
            engine, user, source, status="failed", retry_count=n, attempt=n + 1
        )
        for n in range(4)
    }
    bad_source = await add_question_set(engine, user, source, status="failed", retryable=False)
    pending = await add_question_set(engine, user, source)

    assert (await run_retry(client, worker, batch_size=10)).retried_sets == 3

    for n in (0, 1, 2):
        retried = await question_set(engine, by_retries[n])
        assert (retried.status, retried.retry_count, retried.attempt) == ("pending", n + 1, n + 2)
        assert retried.failure_reason is None
    exhausted = await question_set(engine, by_retries[3])
    assert (exhausted.status, exhausted.retry_count, exhausted.version) == ("failed", 3, 1)
    assert (await question_set(engine, bad_source)).status == "failed"
    assert (await question_set(engine, pending)).version == 1
    events = await rows(
        engine, "SELECT aggregate_id, event_type, payload FROM outbox_events ORDER BY id"
    )
    requested = sorted(
        (e.event_type, e.payload["question_set_id"], e.payload["attempt"]) for e in events
    )
    assert requested == [("question_set.requested", by_retries[n], n + 2) for n in (0, 1, 2)]

    # All failed again: the set now at 3 retries stays failed; the other three retry.
    await rows(engine, "UPDATE question_sets SET status = 'failed' RETURNING id")
    assert (await run_retry(client, worker, batch_size=10)).retried_sets == 3
    assert (
        max(r.retry_count for r in await rows(engine, "SELECT retry_count FROM question_sets")) == 3
    )


async def test_retry_takes_a_bounded_batch_oldest_failure_first(
    engine: AsyncEngine, client: Client, worker: Worker
) -> None:
    user, source = await owner_and_source(engine)
    ids = [await add_question_set(engine, user, source, status="failed") for _ in range(5)]
    await rows(
        engine,
        "UPDATE question_sets SET updated_at = now() - (id * interval '1 minute') RETURNING id",
    )

    assert (await run_retry(client, worker, batch_size=2)).retried_sets == 2
    pending = {
        r.id for r in await rows(engine, "SELECT id FROM question_sets WHERE status = 'pending'")
    }
    assert pending == set(ids[-2:])


async def test_two_retry_runs_at_once_retry_each_set_exactly_once(engine: AsyncEngine) -> None:
    user, source = await owner_and_source(engine)
    count = 300
    await rows(
        engine,
        "INSERT INTO question_sets (user_id, source_id, title, status) "
        "SELECT :u, :s, 'Quiz', 'failed' FROM generate_series(1, :n) RETURNING id",
        u=user, s=source, n=count,
    )  # fmt: skip

    async def one_run() -> int:
        total = 0
        while True:
            async with engine.begin() as conn:
                batch = await question_sets.retry_failed_batch(conn, limit=7)
            total += len(batch)
            if not batch:
                return total

    first, second = await asyncio.gather(one_run(), one_run())

    assert first + second == count and first > 0 and second > 0
    retries = await rows(engine, "SELECT retry_count, attempt FROM question_sets")
    assert {(r.retry_count, r.attempt) for r in retries} == {(1, 2)}
    events = await rows(
        engine, "SELECT count(DISTINCT aggregate_id) AS sets, count(*) AS n FROM outbox_events"
    )
    assert (events[0].sets, events[0].n) == (count, count)


async def test_app_regeneration_loses_to_a_retry_that_committed_first(engine: AsyncEngine) -> None:
    user, source = await owner_and_source(engine)
    set_id = await add_question_set(engine, user, source, status="failed")
    seen_version = (await question_set(engine, set_id)).version

    async with engine.begin() as conn:
        assert len(await question_sets.retry_failed_batch(conn, limit=10)) == 1
    with pytest.raises(question_sets.OptimisticLockConflict, match="reload it"):
        async with engine.begin() as conn:
            await question_sets.request_regeneration(
                conn, question_set_id=set_id, expected_version=seen_version
            )

    final = await question_set(engine, set_id)
    assert (final.attempt, final.retry_count) == (2, 1)
    assert len(await rows(engine, "SELECT 1 FROM outbox_events")) == 1


async def test_retry_skips_a_set_the_app_is_regenerating_or_has_regenerated(
    engine: AsyncEngine,
) -> None:
    user, source = await owner_and_source(engine)
    set_id = await add_question_set(engine, user, source, status="failed")

    async with engine.connect() as app:
        transaction = await app.begin()
        await question_sets.request_regeneration(app, question_set_id=set_id, expected_version=1)
        async with engine.begin() as conn:  # while the app's transaction holds the row
            assert await question_sets.retry_failed_batch(conn, limit=10) == []
        await transaction.commit()
    async with engine.begin() as conn:  # after it committed: the set is pending, not failed
        assert await question_sets.retry_failed_batch(conn, limit=10) == []

    final = await question_set(engine, set_id)
    assert (final.status, final.attempt, final.retry_count, final.version) == ("pending", 2, 0, 2)
    assert len(await rows(engine, "SELECT 1 FROM outbox_events")) == 1


async def test_retry_count_can_never_exceed_three(engine: AsyncEngine) -> None:
    user, source = await owner_and_source(engine)
    set_id = await add_question_set(engine, user, source, status="failed", retry_count=3)
    with pytest.raises(Exception, match="retry_count_in_range"):
        await rows(
            engine,
            "UPDATE question_sets SET retry_count = 4 WHERE id = :id RETURNING id",
            id=set_id,
        )


async def test_request_needs_an_active_source_of_the_user(engine: AsyncEngine) -> None:
    user, source = await owner_and_source(engine)
    other = await add_user(engine, "other@example.com")
    async with engine.begin() as conn:
        assert await question_sets.request_source_deletion(conn, source_id=source)
    for owner in (user, other):
        with pytest.raises(question_sets.SourceUnavailable, match="not an active source"):
            async with engine.begin() as conn:
                await question_sets.request_question_set(
                    conn, user_id=owner, source_id=source, title="Quiz"
                )
    assert await rows(engine, "SELECT 1 FROM question_sets") == []


def test_declared_schedules_for_question_sets_and_sources(settings: Settings) -> None:
    jobs = {job.schedule_id: job for job in declared_schedules(settings)}
    assert jobs["question-set-cleanup"].every == timedelta(minutes=10)
    assert jobs["question-set-retry"].every == timedelta(minutes=5)
    source_cleanup = jobs["source-cleanup"]
    assert (source_cleanup.cron, source_cleanup.workflow) == ("0 4 * * *", "SourceCleanup")
    assert source_cleanup.catchup_window >= timedelta(hours=12)


async def test_source_cleanup_fires_at_0400_seoul_time(client: Client, settings: Settings) -> None:
    seoul = settings.model_copy(update={"schedule_timezone": "Asia/Seoul"})
    (job,) = [j for j in declared_schedules(seoul) if j.schedule_id == "source-cleanup"]
    schedule_id = f"test-source-cleanup-{uuid.uuid4().hex[:8]}"
    handle = await client.create_schedule(schedule_id, build_schedule(job, seoul))
    try:
        description = await handle.describe()
    finally:
        await handle.delete()

    assert description.schedule.spec.time_zone_name == "Asia/Seoul"
    upcoming = description.info.next_action_times[:3]
    assert len(upcoming) == 3
    in_seoul = [t.astimezone(ZoneInfo("Asia/Seoul")) for t in upcoming]
    assert all((t.hour, t.minute, t.second) == (4, 0, 0) for t in in_seoul)
    assert all(t.astimezone(UTC).hour == 19 for t in upcoming)  # 04:00 KST is 19:00 UTC
    assert [b - a for a, b in itertools.pairwise(upcoming)] == [timedelta(days=1)] * 2
