"""cleanup-stale-sessions and update-metrics (the MindHit document, step 6.2)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from learning_platform.jobs.browsing_sessions.contracts import (
    BrowsingSessionActivities,
    CleanupStaleSessionsInput,
    CleanupStaleSessionsResult,
    FailStaleSessionsParams,
    UpdateMetricsInput,
    UpdateMetricsResult,
)
from workflows.job_run import job_run, scheduled_time
from workflows.retry_policies import batch_activity


@workflow.defn(name="CleanupStaleSessions")
class CleanupStaleSessions:
    """Sessions recording/paused with no update for `max_age_hours` before the scheduled time
    become `failed`."""

    @workflow.run
    async def run(self, params: CleanupStaleSessionsInput) -> CleanupStaleSessionsResult:
        async with job_run("cleanup-stale-sessions") as run:
            cutoff = scheduled_time(params.scheduled_time) - timedelta(hours=params.max_age_hours)
            reason = f"no activity for {params.max_age_hours:g} hours (stale cleanup)"
            failed = await batch_activity(
                BrowsingSessionActivities.fail_stale_sessions,
                FailStaleSessionsParams(cutoff=cutoff, reason=reason),
                start_to_close=timedelta(minutes=10),
                heartbeat=timedelta(seconds=30),
            )
            run.counts.update(failed_sessions=failed, cutoff=cutoff.isoformat())
        return CleanupStaleSessionsResult(failed_sessions=failed, cutoff=cutoff)


@workflow.defn(name="UpdateMetrics")
class UpdateMetrics:
    """Counts active sessions and stores the count, which every worker's /metrics exports."""

    @workflow.run
    async def run(self, params: UpdateMetricsInput) -> UpdateMetricsResult:
        async with job_run("update-metrics") as run:
            count: int = await workflow.execute_activity(
                BrowsingSessionActivities.record_active_sessions,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=3),
            )
            run.counts["active_sessions"] = count
        return UpdateMetricsResult(active_sessions=count)
