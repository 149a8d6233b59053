"""The real stack for a benchmark: embedded PostgreSQL (or BENCH_DATABASE_URL) and a Temporal
dev server with a worker wired exactly as in production."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.registry import Dependencies
from learning_platform.core.database import create_engine, start_embedded_postgres
from learning_platform.core.settings import Settings
from learning_platform.dev.embedded_temporal import search_attribute_args, temporal_cli_path
from learning_platform.migrations import upgrade
from learning_platform.temporal.payload_codec import data_converter
from worker import create_worker

T = TypeVar("T")


@dataclass
class BenchStack:
    database_url: str
    engine: AsyncEngine
    client: Client
    settings: Settings


def database_url() -> str:
    url = os.environ.get("BENCH_DATABASE_URL")
    if url:
        return url
    return start_embedded_postgres(Path(tempfile.mkdtemp(prefix="bench-pg-")), at_exit="delete")


@asynccontextmanager
async def bench_stack(**setting_overrides: Any) -> AsyncIterator[BenchStack]:
    url = database_url()
    await asyncio.to_thread(upgrade, url)
    settings = Settings(
        database_url=url,
        task_queue=f"bench-{uuid.uuid4().hex[:8]}",
        metrics_port=0,
        **setting_overrides,
    )
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        dev_server_extra_args=search_attribute_args(),
        data_converter=data_converter(settings),
    )
    engine = create_engine(url, pool_size=setting_overrides.get("database_pool_size", 4))
    try:
        deps = Dependencies(settings=settings, engine=engine, temporal=env.client)
        async with create_worker(env.client, deps):
            yield BenchStack(url, engine, env.client, settings)
    finally:
        await engine.dispose()
        await env.shutdown()


async def timed(action: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    started = time.perf_counter()
    result = await action()
    return time.perf_counter() - started, result
