"""Retry policies shared by the job families (each activity call names the one it uses), and
the one way a batch job calls its activity."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy

A = TypeVar("A")
R = TypeVar("R")

# Database steps: a restart or failover of PostgreSQL is waited out, however long it takes;
# errors retrying cannot fix are raised non-retryable by the activity itself.
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)

# LLM calls (every AI activity of every family): rate limits and outages are backed off up to a
# minute (a `Retry-After` from the server replaces the computed delay, activities/llm_errors.py)
# and given up after eight attempts, about three minutes of waiting: a two-minute LLM outage is
# outlasted (fault scenario 5), and a longer one fails a session, or a question-set attempt that
# question-set-retry tries again later, well inside its execution timeout. Errors retrying
# cannot fix are raised non-retryable by the activity.
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=8,
)


async def batch_activity(
    step: Callable[[A], Awaitable[R]], arg: A, *, start_to_close: timedelta, heartbeat: timedelta
) -> R:
    """A batch job's one activity: long-running, heartbeating (a lost worker's attempt is
    retried after `heartbeat`), retried on database errors however long they last; it resumes
    after its last committed batch (activities/batches.py)."""
    return await workflow.execute_activity(
        step,
        arg,
        start_to_close_timeout=start_to_close,
        heartbeat_timeout=heartbeat,
        retry_policy=DATABASE_RETRY,
    )
