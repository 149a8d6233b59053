from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.outbox_relay import OutboxRelayActivities
from activities.registry import Dependencies
from learning_platform.core.database import create_engine
from learning_platform.core.settings import Settings
from learning_platform.jobs.outbox_relay.contracts import (
    DrainOutboxParams,
    DrainOutboxResult,
    EnsureOutboxRelayInput,
    OutboxRelayInput,
)
from learning_platform.jobs.outbox_relay.events import enqueue_event
from learning_platform.jobs.outbox_relay.queries import (
    EventHandler,
    MalformedEvent,
    PendingEvent,
    relay_batch,
    set_relay_partitions,
)
from learning_platform.jobs.question_sets.contracts import generation_workflow_id
from tests.factories import add_user
from tests.learning_helpers import (
    FAST_RETRY,
    drain,
    enqueue,
    pending_events,
    production_handlers,
    record,
    stats,
    wait_for,
)
from tests.worker_process import running_worker, worker_env
from worker import create_worker
from workflows.outbox_relay import EnsureOutboxRelay, OutboxRelay

EVENT = "test.event"


@pytest.fixture
async def deliveries(engine: AsyncEngine) -> AsyncIterator[None]:
    """What a test handler delivered, written in the relay's transaction: only committed
    deliveries remain. `previous_seen` is the aggregate's latest sequence number visible then."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS relay_test_deliveries (n bigserial, event_id bigint, "
                "relay text, aggregate_id text, seq int, previous_seen int, "
                "delivered_at timestamptz DEFAULT clock_timestamp())"
            )
        )
        await conn.execute(text("TRUNCATE relay_test_deliveries"))
    yield


def recording_handler(relay: str = "relay") -> EventHandler:
    async def handle(conn: AsyncConnection, events: Sequence[PendingEvent]) -> None:
        for event in events:
            if event.payload.get("poison"):
                raise MalformedEvent(f"event {event.id} is poison")
            if event.payload.get("fail_first") and event.attempts == 0:
                raise RuntimeError("transient failure")
            await conn.execute(
                text(
                    "INSERT INTO relay_test_deliveries "
                    "(event_id, relay, aggregate_id, seq, previous_seen) "
                    "SELECT :id, :relay, :agg, :seq, coalesce(max(seq), 0) "
                    "FROM relay_test_deliveries WHERE aggregate_id = :agg"
                ),
                {"id": event.id, "relay": relay, "agg": event.aggregate_id,
                 "seq": event.payload["seq"]},
            )  # fmt: skip

    return handle


async def delivered_rows(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        rows = await conn.execute(text("SELECT * FROM relay_test_deliveries ORDER BY n"))
        return [dict(row._mapping) for row in rows]


def metric(name: str, event_type: str) -> float:
    return REGISTRY.get_sample_value(name, {"event_type": event_type}) or 0.0


async def test_poison_event_is_dead_lettered_and_later_events_still_flow(
    engine: AsyncEngine, deliveries: None
) -> None:
    dead_before = metric("outbox_dead_lettered_total", EVENT)
    await enqueue(engine, EVENT, {"seq": 1}, "A")
    poison = await enqueue(engine, EVENT, {"seq": 2, "poison": True}, "A")
    await enqueue(engine, EVENT, {"seq": 3}, "A")
    for seq in (1, 2, 3):
        await enqueue(engine, EVENT, {"seq": seq}, "B")
    unknown = await enqueue(engine, "nothing.handled", {}, "C")

    await drain(engine, {EVENT: recording_handler()})

    rows = await delivered_rows(engine)
    assert sorted((r["aggregate_id"], r["seq"]) for r in rows) == [
        ("A", 1), ("A", 3), ("B", 1), ("B", 2), ("B", 3),
    ]  # fmt: skip
    async with engine.connect() as conn:
        letters = {
            row.id: row for row in await conn.execute(text("SELECT * FROM outbox_dead_letters"))
        }
    assert set(letters) == {poison, unknown}
    assert letters[poison].attempts == FAST_RETRY.max_attempts
    assert "is poison" in letters[poison].last_error
    assert "no handler for event type 'nothing.handled'" in letters[unknown].last_error
    # A's third event waited until the second had left the outbox (dead-lettered).
    a3 = next(r for r in rows if (r["aggregate_id"], r["seq"]) == ("A", 3))
    assert a3["delivered_at"] > letters[poison].dead_lettered_at  # type: ignore[operator]
    assert metric("outbox_dead_lettered_total", EVENT) == dead_before + 1


async def test_two_relays_at_once_deliver_each_event_once_in_aggregate_order(
    engine: AsyncEngine, database_url: str, deliveries: None
) -> None:
    aggregates, per_aggregate = 8, 50
    async with engine.begin() as conn:
        # Interleaved aggregates; every seventh event fails its first attempt.
        await conn.execute(
            text(
                "INSERT INTO outbox_events (aggregate_type, aggregate_id, event_type, payload) "
                "SELECT 'test', 'agg-' || a, :t, jsonb_build_object('seq', s, 'fail_first', "
                "s % 7 = 3) FROM generate_series(1, :n) s, generate_series(1, :a) a "
                "ORDER BY s, a"
            ),
            {"t": EVENT, "n": per_aggregate, "a": aggregates},
        )
    engines = [create_engine(database_url, pool_size=2) for _ in range(2)]

    async def relay(name: str, relay_engine: AsyncEngine) -> None:
        handlers = {EVENT: recording_handler(name)}
        while await pending_events(relay_engine):
            outcome = await relay_batch(relay_engine, handlers, limit=16, retry=FAST_RETRY)
            if not outcome.claimed:
                await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(
            asyncio.gather(relay("one", engines[0]), relay("two", engines[1])), timeout=60
        )
    finally:
        for relay_engine in engines:
            await relay_engine.dispose()

    rows = await delivered_rows(engine)
    assert len(rows) == aggregates * per_aggregate
    assert len({r["event_id"] for r in rows}) == len(rows)
    # Each event saw its predecessor already delivered (committed), never a later one.
    assert all(r["previous_seen"] == r["seq"] - 1 for r in rows)  # type: ignore[operator]
    assert {r["relay"] for r in rows} == {"one", "two"}


async def test_question_set_requested_starts_one_workflow_per_attempt(
    engine: AsyncEngine, client: Client, settings: Settings
) -> None:
    payload = {"question_set_id": 4242, "attempt": 2}
    for _ in range(2):  # a redelivery (or duplicate) of the same request
        await enqueue(engine, "question_set.requested", payload, 4242)

    outcome = await drain(engine, production_handlers(client, settings))

    assert outcome.delivered == 2
    workflow_id = generation_workflow_id(4242, 2, settings.schedule_id_prefix)
    assert workflow_id.endswith("question-set-4242-attempt-2")
    handle = client.get_workflow_handle(workflow_id)
    description = await handle.describe()
    assert description.task_queue == settings.task_queue
    # The visibility list lags behind starts: wait for the run to show, then count.
    async with asyncio.timeout(10):
        while True:
            runs = [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]
            if runs:
                break
            await asyncio.sleep(0.1)
    assert len(runs) == 1
    await handle.terminate("test over")


async def test_watchdog_keeps_one_relay_which_wakes_on_commit(
    engine: AsyncEngine, client: Client, deps: Dependencies, settings: Settings
) -> None:
    short = settings.model_copy(update={"outbox_drain_minutes": 0.05})
    async with create_worker(client, Dependencies(short, deps.engine, deps.temporal)) as worker:
        runs = [
            await client.execute_workflow(
                EnsureOutboxRelay.run,
                EnsureOutboxRelayInput(),
                id=f"watchdog-{uuid.uuid4()}",
                task_queue=worker.task_queue,
            )
            for _ in range(2)
        ]
        assert runs[0] == runs[1]
        assert runs[0].workflow_id == f"{settings.schedule_id_prefix}outbox-relay"
        user = await add_user(engine)
        await record(engine, user, datetime.now(UTC))

        async def counted() -> bool:
            async with engine.connect() as conn:
                total = await conn.scalar(
                    text("SELECT total_solved FROM learn_stats WHERE user_id = :u"), {"u": user}
                )
            return total == 1

        await wait_for(counted, within=15, interval=0.02)
        await client.get_workflow_handle(runs[0].workflow_id).terminate("test over")
    assert await pending_events(engine) == 0


async def test_worker_killed_between_handling_and_deleting_redelivers_once(
    engine: AsyncEngine, client: Client, deps: Dependencies, settings: Settings
) -> None:
    user = await add_user(engine)
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO learn_stats (user_id) VALUES (:u)"), {"u": user})
    await record(engine, user, datetime.now(UTC))

    # Holding the user's stats row stops the relay's transaction mid-handling, after it has
    # marked the record applied and added the day, before the event's removal.
    blocker = await engine.connect()
    await blocker.begin()
    await blocker.execute(
        text("SELECT 1 FROM learn_stats WHERE user_id = :u FOR UPDATE"), {"u": user}
    )
    try:
        with running_worker(settings) as process:
            relay = await client.start_workflow(
                OutboxRelay.run,
                OutboxRelayInput(drain_seconds=60),
                id=f"relay-{uuid.uuid4()}",
                task_queue=settings.task_queue,
            )

            async def relay_waits_on_lock() -> bool:
                async with engine.connect() as conn:
                    waiting = await conn.scalar(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                            "'Lock' AND query LIKE '%UPDATE learning_records%'"
                        )
                    )
                return bool(waiting)

            await wait_for(relay_waits_on_lock)
            process.kill()
    finally:
        await blocker.rollback()
        await blocker.close()
    await relay.terminate("worker killed")

    async def orphan_rolled_back() -> bool:
        try:
            async with engine.begin() as conn:
                await conn.execute(text("SELECT 1 FROM outbox_events FOR UPDATE NOWAIT"))
        except DBAPIError:
            return False
        return True

    await wait_for(orphan_rolled_back)
    assert (await stats(engine, user))["total_solved"] == 0
    assert await pending_events(engine) == 1

    await drain(engine, production_handlers(client, settings))
    after = await stats(engine, user)
    assert (after["total_solved"], after["current_streak"]) == (1, 1)


def run_cli(settings: Settings, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "learning_platform", "outbox", *args],
        env=worker_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


async def test_dead_letters_cli_lists_and_requeues(
    engine: AsyncEngine, client: Client, settings: Settings, deliveries: None
) -> None:
    first = await enqueue(engine, EVENT, {"seq": 1, "poison": True}, "A")
    second = await enqueue(engine, EVENT, {"seq": 1, "poison": True}, "B")
    await drain(engine, {EVENT: recording_handler()})

    listing = run_cli(settings, "dead-letters", "list")
    assert f"{first}\t{EVENT}\ttest:A\tattempts=3" in listing
    assert "2 dead letter(s)" in listing

    # The cause is fixed (here: the payload), then one is requeued, then the rest.
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE outbox_dead_letters SET payload = '{\"seq\": 1}'"))
    assert run_cli(settings, "dead-letters", "requeue", str(first)) == "requeued 1 event(s)\n"
    assert run_cli(settings, "dead-letters", "requeue", "--all") == "requeued 1 event(s)\n"
    await drain(engine, {EVENT: recording_handler()})
    assert sorted(r["aggregate_id"] for r in await delivered_rows(engine)) == ["A", "B"]
    assert second != first


def slow_recording_handler(relay: str) -> EventHandler:
    """Records like recording_handler, then holds the batch's transaction open a moment, so
    that a change of partitions finds batches in flight."""
    record_events = recording_handler(relay)

    async def handle(conn: AsyncConnection, events: Sequence[PendingEvent]) -> None:
        await record_events(conn, events)
        await asyncio.sleep(0.005)

    return handle


async def test_changing_partitions_while_events_flow_keeps_order_and_delivers_once(
    engine: AsyncEngine, client: Client, settings: Settings, deliveries: None
) -> None:
    """Partitions 1 → 3 → 2 → 1 while producers write: relays of the old and the new count
    overlap, and each aggregate's events still arrive once each, in order, whichever relay
    delivers them; a relay whose partition is gone ends with `retired`."""
    fast = settings.model_copy(update={"outbox_batch_size": 8, "outbox_poll_seconds": 0.05})
    aggregates = [f"agg-{n}" for n in range(24)]
    produced = 0
    producing = True

    async def produce() -> None:
        nonlocal produced
        seq = 0
        while producing:
            seq += 1
            async with engine.begin() as conn:
                for aggregate in aggregates:  # every fifth event fails its first attempt
                    await enqueue_event(
                        conn, aggregate_type="test", aggregate_id=aggregate, event_type=EVENT,
                        payload={"seq": seq, "fail_first": seq % 5 == 2},
                    )  # fmt: skip
            produced += len(aggregates)
            await asyncio.sleep(0.01)

    def relay(partition: int) -> asyncio.Task[DrainOutboxResult]:
        activities = OutboxRelayActivities(
            engine, fast, client, {EVENT: slow_recording_handler(f"relay-{partition}")}
        )
        # Longer than the test may take on a loaded machine: partition 0's relay must still be
        # draining at the end (the test cancels it); the others end by retiring.
        return asyncio.create_task(
            ActivityEnvironment().run(
                activities.drain_outbox, DrainOutboxParams(run_seconds=900, partition=partition)
            )
        )

    async def set_partitions(n: int) -> None:
        async with engine.begin() as conn:
            await set_relay_partitions(conn, n)

    async def delivered_by(name: str) -> int:
        return sum(1 for row in await delivered_rows(engine) if row["relay"] == name)

    async def more_delivered(than: int) -> None:
        await wait_for(lambda: _count_above(engine, than), within=30, interval=0.02)

    await set_partitions(1)
    producer = asyncio.create_task(produce())
    relays = {0: relay(0)}
    await more_delivered(100)
    await set_partitions(3)
    relays |= {1: relay(1), 2: relay(2)}
    await wait_for(lambda: _all_delivered_some(engine, ["relay-1", "relay-2"]), within=30)
    await more_delivered(len(await delivered_rows(engine)) + 200)
    await set_partitions(2)
    assert (await asyncio.wait_for(relays[2], 30)).retired
    await more_delivered(len(await delivered_rows(engine)) + 200)
    await set_partitions(1)
    assert (await asyncio.wait_for(relays[1], 30)).retired
    await more_delivered(len(await delivered_rows(engine)) + 100)
    producing = False
    await producer
    await wait_for(lambda: _drained_by(relays[0], engine), within=60, interval=0.05)
    relays[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await relays[0]

    rows = await delivered_rows(engine)
    assert len(rows) == produced
    assert len({r["event_id"] for r in rows}) == len(rows)
    # Each event saw its aggregate's previous event already delivered (committed), never later.
    out_of_order = [r for r in rows if r["previous_seen"] != r["seq"] - 1]  # type: ignore[operator]
    assert out_of_order == []
    # Aggregates changed hands: some were delivered by more than one relay.
    handed_over = {
        a for a in aggregates if len({r["relay"] for r in rows if r["aggregate_id"] == a}) > 1
    }
    assert handed_over
    assert await delivered_by("relay-2") > 0


async def _count_above(engine: AsyncEngine, count: int) -> bool:
    return len(await delivered_rows(engine)) > count


async def _all_delivered_some(engine: AsyncEngine, relays: Sequence[str]) -> bool:
    seen = {row["relay"] for row in await delivered_rows(engine)}
    return all(name in seen for name in relays)


async def _drained_by(relay: asyncio.Task[DrainOutboxResult], engine: AsyncEngine) -> bool:
    assert not relay.done(), "partition 0's relay ended before the outbox was empty"
    return await _outbox_empty(engine)


async def _outbox_empty(engine: AsyncEngine) -> bool:
    return await pending_events(engine) == 0


async def test_watchdog_runs_one_relay_per_partition_and_retires_the_extra_ones(
    engine: AsyncEngine, client: Client, deps: Dependencies, settings: Settings
) -> None:
    two = settings.model_copy(update={"outbox_relay_partitions": 2, "outbox_drain_minutes": 0.05})
    async with create_worker(client, Dependencies(two, deps.engine, deps.temporal)) as worker:
        started = await client.execute_workflow(
            EnsureOutboxRelay.run,
            EnsureOutboxRelayInput(),
            id=f"watchdog-{uuid.uuid4()}",
            task_queue=worker.task_queue,
        )
        prefix = settings.schedule_id_prefix
        assert started.workflow_ids == [f"{prefix}outbox-relay", f"{prefix}outbox-relay-1"]
        users = [await add_user(engine, f"user{n}@example.com") for n in range(8)]
        for user in users:
            await record(engine, user, datetime.now(UTC))
        await wait_for(lambda: _outbox_empty(engine), within=15, interval=0.02)
        assert [(await stats(engine, user))["total_solved"] for user in users] == [1] * 8

    # The setting back to 1 (a deploy): the next watchdog run retires partition 1.
    one = settings.model_copy(update={"outbox_drain_minutes": 0.05})
    async with create_worker(client, Dependencies(one, deps.engine, deps.temporal)) as worker:
        again = await client.execute_workflow(
            EnsureOutboxRelay.run,
            EnsureOutboxRelayInput(),
            id=f"watchdog-{uuid.uuid4()}",
            task_queue=worker.task_queue,
        )
        assert again.workflow_ids == [f"{prefix}outbox-relay"]
        # Partition 1's relay sees the count fall and completes instead of continuing.
        retired = client.get_workflow_handle(started.workflow_ids[1])
        await asyncio.wait_for(retired.result(), timeout=30)
        await client.get_workflow_handle(started.workflow_ids[0]).terminate("test over")


async def test_new_owner_of_an_aggregate_waits_for_the_old_owners_batch_in_flight(
    engine: AsyncEngine, deliveries: None
) -> None:
    """The hand-over when the partition count changes: a relay of the old count still holds
    an aggregate's event in its open transaction; the aggregate's new owner must not deliver
    the next event until that transaction has committed."""
    async with engine.connect() as conn:
        # An aggregate that partition 0 owns of 1 and partition 1 owns of 2.
        aggregate = await conn.scalar(
            text(
                "SELECT a FROM (SELECT 'agg-' || n AS a FROM generate_series(1, 50) n) s "
                "WHERE (hashtext('test/' || a) & 2147483647) % 2 = 1 LIMIT 1"
            )
        )
    assert aggregate is not None
    for seq in (1, 2):
        await enqueue(engine, EVENT, {"seq": seq}, aggregate)
    async with engine.begin() as conn:
        await set_relay_partitions(conn, 1)
    entered, release = asyncio.Event(), asyncio.Event()
    record_old = recording_handler("old owner")

    async def held(conn: AsyncConnection, events: Sequence[PendingEvent]) -> None:
        await record_old(conn, events)
        entered.set()
        await release.wait()

    old_owner = asyncio.create_task(
        relay_batch(engine, {EVENT: held}, limit=1, retry=FAST_RETRY, partition=0)
    )
    await asyncio.wait_for(entered.wait(), 10)
    async with engine.begin() as conn:
        await set_relay_partitions(conn, 2)
    new_owner = {EVENT: recording_handler("new owner")}

    waiting = await relay_batch(engine, new_owner, limit=8, retry=FAST_RETRY, partition=1)
    assert (waiting.claimed, waiting.delivered) == (1, 0)  # locked, then left: blocked
    release.set()
    assert (await old_owner).delivered == 1
    after = await relay_batch(engine, new_owner, limit=8, retry=FAST_RETRY, partition=1)
    assert after.delivered == 1
    rows = await delivered_rows(engine)
    assert [(r["relay"], r["seq"], r["previous_seen"]) for r in rows] == [
        ("old owner", 1, 0), ("new owner", 2, 1),
    ]  # fmt: skip
