"""Real PostgreSQL and a real Temporal dev server, started once per test session.

TEST_DATABASE_URL reuses a running PostgreSQL (its tables are truncated between tests);
TEST_TEMPORAL_ADDRESS reuses a running Temporal server. Unset, both are started here.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.registry import Dependencies
from learning_platform.core.database import create_engine, libpq_url, start_embedded_postgres
from learning_platform.core.settings import Settings
from learning_platform.dev.embedded_temporal import search_attribute_args, temporal_cli_path
from learning_platform.migrations import upgrade
from learning_platform.schema import metadata
from tests.codec_keys import TEST_CODEC_KEYS, encrypting_converter
from worker import create_workers

# Property-based tests: a short run by default (make test), a long one with
# HYPOTHESIS_PROFILE=long (make test-fuzz). No per-example deadline: the peers are real servers.
hypothesis_settings.register_profile("default", max_examples=50, deadline=None)
hypothesis_settings.register_profile("long", max_examples=2000, deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        # A short path: the server's Unix socket lives in it and socket paths are limited.
        url = start_embedded_postgres(Path(tempfile.mkdtemp(prefix="pg-")), at_exit="delete")
    upgrade(url)
    yield url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, pool_size=10)
    yield engine
    await engine.dispose()


@pytest.fixture(autouse=True)
async def clean_tables(request: pytest.FixtureRequest) -> None:
    """Every test that touches the database starts from empty tables."""
    if "engine" not in request.fixturenames:
        return
    engine: AsyncEngine = request.getfixturevalue("engine")
    tables = ", ".join(table.name for table in metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    address = os.environ.get("TEST_TEMPORAL_ADDRESS")
    if address:
        env = WorkflowEnvironment.from_client(
            await Client.connect(address, data_converter=encrypting_converter())
        )
    else:
        env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_cli_path(),
            dev_server_extra_args=search_attribute_args(),
            data_converter=encrypting_converter(),
        )
    yield env
    await env.shutdown()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def task_queue() -> str:
    """A queue of the test's own, so workers of other tests never pick up its tasks."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(database_url: str, task_queue: str, tmp_path: Path, client: Client) -> Settings:
    return Settings(
        database_url=database_url,
        task_queue=task_queue,
        data_dir=tmp_path,
        metrics_port=0,
        temporal_address=client.service_client.config.target_host,
        temporal_namespace=client.namespace,
        worker_shutdown_grace_seconds=5,
        schedule_id_prefix=f"{task_queue}-",
        cleanup_batch_size=50,
        payload_codec_keys=TEST_CODEC_KEYS,
    )


@pytest.fixture
def deps(settings: Settings, engine: AsyncEngine, client: Client) -> Dependencies:
    return Dependencies(settings=settings, engine=engine, temporal=client)


@pytest.fixture
async def worker(client: Client, deps: Dependencies) -> AsyncIterator[Worker]:
    """The production worker wiring, on the test's own task queue; yields the main queue's
    worker while the AI queue's worker runs beside it."""
    main, ai = create_workers(client, deps)
    async with ai, main:
        yield main


@pytest.fixture
async def empty_database(database_url: str) -> AsyncIterator[str]:
    """A database of the test's own on the test server, with no schema; dropped afterwards."""
    name = f"empty_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(libpq_url(database_url))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()
