"""Waiting, bounded, for what a process needs at start: an engine that skips compose's health
conditions (podman-compose with podman < 4.6) starts the one-shots and the workers beside the
services and setup steps they need, so each waits for them itself (README "Containers")."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from learning_platform.core.errors import OperatorError

T = TypeVar("T")
log = logging.getLogger("waiting")
MAX_DELAY_SECONDS = 5.0


def say_waiting(message: str) -> None:
    """A JSON log line when logging is set up (the worker), else a plain line on stderr."""
    if logging.getLogger().handlers:
        log.warning(message)
    else:
        print(message, file=sys.stderr, flush=True)


async def retried(
    attempt: Callable[[], Awaitable[T]],
    *,
    retry_on: tuple[type[OperatorError], ...],
    wait_seconds: float,
    what: str,
    since: float | None = None,
) -> T:
    """attempt(), again while it raises one of `retry_on` (what waiting can fix), until
    `wait_seconds` after `since` (a time.monotonic(); default now: several steps can share one
    wait); then that error again, saying that `what` was not ready in time. Any other error
    ends it at once. With `wait_seconds` 0 it is attempt() alone."""
    deadline = (time.monotonic() if since is None else since) + wait_seconds
    delay = 0.5
    while True:
        try:
            return await attempt()
        except retry_on as exc:
            if time.monotonic() + delay > deadline:
                if wait_seconds == 0:
                    raise
                raise type(exc)(f"{what} was not ready within {wait_seconds:g} s: {exc}") from exc
            say_waiting(f"waiting for {what}: {exc}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_SECONDS)
