"""Retry policies shared by the job families (each activity call names the one it uses)."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Database steps: a restart or failover of PostgreSQL is waited out, however long it takes;
# errors retrying cannot fix are raised non-retryable by the activity itself.
DATABASE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
