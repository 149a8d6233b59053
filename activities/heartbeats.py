"""Heartbeats for activities that wait on one long call (an LLM answer, a page download)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from temporalio import activity


@contextlib.asynccontextmanager
async def heartbeating(
    every_seconds: float = 2.0, details: Callable[[], Sequence[Any]] = tuple
) -> AsyncIterator[None]:
    """Heartbeat while the block runs, so a crashed worker's attempt is retried within the
    heartbeat timeout instead of the (much longer) start-to-close timeout. Each beat carries
    `details()` (the progress a retry resumes from: every beat replaces the last)."""

    # The first beat only after `every_seconds`: most calls finish sooner, and each beat is a
    # request to the Temporal server.
    async def beat() -> None:
        while True:
            await asyncio.sleep(every_seconds)
            activity.heartbeat(*details())

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
