from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.registry import Dependencies
from learning_platform.core.metrics import free_loopback_port
from learning_platform.core.settings import Settings
from learning_platform.jobs.question_sets.contracts import SourceCleanupInput, SourceCleanupResult
from learning_platform.storage import ObjectStorage, build_storage
from tests.factories import add_user
from tests.moto_s3 import ACCESS_KEY, REGION, SECRET_KEY, create_bucket, s3_server
from tests.question_set_factories import add_question_set, add_source, rows
from worker import create_workers
from workflows.question_sets import SourceCleanup

SCHEDULED = datetime(2026, 11, 20, 19, 0, tzinfo=UTC)  # 04:00 in Seoul
BEFORE = SCHEDULED - timedelta(days=2)


async def stored(engine: AsyncEngine, storage: ObjectStorage, user: int, **kw: Any) -> int:
    key = f"users/{user}/{uuid.uuid4().hex}.txt"
    await storage.put(key, b"notes", "text/plain")
    return await add_source(engine, user, key, **kw)


async def source_keys(engine: AsyncEngine) -> dict[int, str]:
    return {r.id: r.storage_key for r in await rows(engine, "SELECT id, storage_key FROM sources")}


async def start_cleanup(client: Client, worker: Worker) -> WorkflowHandle[Any, SourceCleanupResult]:
    return await client.start_workflow(
        SourceCleanup.run,
        SourceCleanupInput(scheduled_time=SCHEDULED),
        id=f"source-cleanup-{uuid.uuid4()}",
        task_queue=worker.task_queue,
    )


async def test_deletes_object_then_row_of_unused_sources_marked_before_the_run(
    engine: AsyncEngine, client: Client, worker: Worker, settings: Settings
) -> None:
    storage = build_storage(settings)
    user = await add_user(engine)
    unused = [await stored(engine, storage, user, deletion_requested_at=BEFORE) for _ in range(3)]
    already_gone = await add_source(engine, user, "users/gone.txt", deletion_requested_at=BEFORE)
    still_used = await stored(engine, storage, user, deletion_requested_at=BEFORE)
    await add_question_set(engine, user, still_used, status="completed")
    active = await stored(engine, storage, user)
    marked_later = await stored(
        engine, storage, user, deletion_requested_at=SCHEDULED + timedelta(minutes=1)
    )
    keys = await source_keys(engine)

    result = await (await start_cleanup(client, worker)).result()

    assert result.deleted_sources == 4
    assert set(await source_keys(engine)) == {still_used, active, marked_later}
    for source in unused:
        assert not await storage.exists(keys[source])
    for source in (still_used, active, marked_later):
        assert await storage.exists(keys[source])
    assert already_gone not in await source_keys(engine)


async def test_more_sources_than_one_batch(
    engine: AsyncEngine, client: Client, worker: Worker, settings: Settings
) -> None:
    storage = build_storage(settings)
    user = await add_user(engine)
    count = settings.source_cleanup_batch_size + 5
    for _ in range(count):
        await stored(engine, storage, user, deletion_requested_at=BEFORE)

    assert (await (await start_cleanup(client, worker)).result()).deleted_sources == count
    assert not any((settings.data_dir / "objects").rglob("*.txt"))


async def wait_for_failed_attempt(
    client: Client, handle: WorkflowHandle[Any, Any], within: float = 20
) -> str:
    """Poll (Temporal reports no event for it) until the pending activity has failed once."""
    async with asyncio.timeout(within):
        while True:
            pending = (await handle.describe()).raw_description.pending_activities
            if pending and pending[0].attempt >= 2:
                # Decoded: the payload codec keeps failure messages encrypted on the server.
                failure = pending[0].last_failure
                return str(await client.data_converter.decode_failure(failure))
            await asyncio.sleep(0.05)


@pytest.fixture
def s3_endpoint() -> Iterator[str]:
    with s3_server() as endpoint:
        yield endpoint


@pytest.fixture
async def s3_outage(
    client: Client, deps: Dependencies, s3_endpoint: str
) -> AsyncIterator[tuple[Worker, ObjectStorage, int]]:
    """A worker whose S3 endpoint is down until the test starts a server on `port` (moto's
    servers in one process share their buckets)."""
    bucket = f"sources-{uuid.uuid4().hex[:8]}"
    port = free_loopback_port()
    s3 = {
        "storage_backend": "s3", "s3_bucket": bucket, "s3_region": REGION,
        "s3_access_key_id": ACCESS_KEY, "s3_secret_access_key": SecretStr(SECRET_KEY),
    }  # fmt: skip
    reachable = deps.settings.model_copy(update={**s3, "s3_endpoint_url": s3_endpoint})
    storage = build_storage(reachable)
    await create_bucket(s3_endpoint, bucket)
    down = deps.settings.model_copy(update={**s3, "s3_endpoint_url": f"http://127.0.0.1:{port}"})
    main, ai = create_workers(client, Dependencies(down, deps.engine, client))
    async with ai, main:
        yield main, storage, port


async def test_storage_failing_once_is_retried_and_then_finishes(
    engine: AsyncEngine, client: Client, s3_outage: tuple[Worker, ObjectStorage, int]
) -> None:
    worker, storage, port = s3_outage
    user = await add_user(engine)
    sources = [await stored(engine, storage, user, deletion_requested_at=BEFORE) for _ in range(2)]
    keys = await source_keys(engine)

    handle = await start_cleanup(client, worker)
    failure = await wait_for_failed_attempt(client, handle)
    assert f"127.0.0.1:{port}" in failure
    assert set(await source_keys(engine)) == set(sources)  # nothing deleted while S3 was down

    with s3_server(port=port):
        assert (await handle.result()).deleted_sources == 2
    assert await source_keys(engine) == {}
    for source in sources:
        assert not await storage.exists(keys[source])


async def test_database_failing_after_the_objects_were_deleted_is_finished_by_the_retry(
    engine: AsyncEngine, client: Client, worker: Worker, settings: Settings
) -> None:
    storage = build_storage(settings)
    user = await add_user(engine)
    sources = [await stored(engine, storage, user, deletion_requested_at=BEFORE) for _ in range(3)]
    keys = await source_keys(engine)
    for statement in FAILING_DELETE_TRIGGER:
        await rows(engine, statement)
    try:
        handle = await start_cleanup(client, worker)
        # SQLAlchemy's error with its causes and stacks, bounded to what the server keeps of a
        # pending activity's last failure (learning_platform/temporal/failures.py).
        failure = await wait_for_failed_attempt(client, handle)
        assert "injected: database down" in failure
        # Objects went first; the rows stayed, still marked, for the next try.
        assert set(await source_keys(engine)) == set(sources)
        assert not any([await storage.exists(key) for key in keys.values()])
    finally:
        await rows(engine, "DROP FUNCTION fail_source_delete() CASCADE")

    assert (await handle.result()).deleted_sources == 3
    assert await source_keys(engine) == {}


FAILING_DELETE_TRIGGER = (
    """CREATE FUNCTION fail_source_delete() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION 'injected: database down'; END $$""",
    """CREATE TRIGGER fail_source_delete BEFORE DELETE ON sources
       FOR EACH STATEMENT EXECUTE FUNCTION fail_source_delete()""",
)
