"""retention: old notifications, dead letters and crawl records go; cached summaries expire."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from learning_platform.jobs.retention.contracts import (
    DEAD_LETTERS,
    NOTIFICATIONS,
    PAGE_CRAWLS,
    URL_SUMMARIES,
    PruneParams,
    RetentionActivities,
    RetentionInput,
    RetentionResult,
)
from workflows.job_run import job_run, scheduled_time
from workflows.retry_policies import batch_activity


@workflow.defn(name="Retention")
class Retention:
    """Each target's rows older than its age before the scheduled time are deleted."""

    @workflow.run
    async def run(self, params: RetentionInput) -> RetentionResult:
        async with job_run("retention") as run:
            now = scheduled_time(params.scheduled_time)
            ages = {
                NOTIFICATIONS: params.notification_max_age_days,
                DEAD_LETTERS: params.dead_letter_max_age_days,
                PAGE_CRAWLS: params.page_crawl_max_age_days,
                URL_SUMMARIES: params.url_summary_ttl_days,
            }
            deleted: dict[str, int] = {}
            for target, days in ages.items():
                deleted[target] = await batch_activity(
                    RetentionActivities.prune_expired_rows,
                    PruneParams(target=target, cutoff=now - timedelta(days=days)),
                    start_to_close=timedelta(minutes=30),
                    heartbeat=timedelta(minutes=1),
                )
            run.counts.update(deleted)
        return RetentionResult(**deleted)
