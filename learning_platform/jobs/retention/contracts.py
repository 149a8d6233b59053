"""The daily retention job: rows past their age are deleted in bounded batches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from learning_platform.jobs.contracts import Activity, ActivityInterfaces, JobSchedule

if TYPE_CHECKING:
    from learning_platform.core.settings import Settings

# What the job prunes, in this order (each names a target in retention/queries.py).
NOTIFICATIONS = "notifications"
DEAD_LETTERS = "dead_letters"
PAGE_CRAWLS = "page_crawls"
URL_SUMMARIES = "url_summaries"


@dataclass
class RetentionInput:
    # None: the schedule's scheduled time (TemporalScheduledStartTime), else workflow time.
    scheduled_time: datetime | None = None
    notification_max_age_days: float = 30.0
    dead_letter_max_age_days: float = 30.0
    page_crawl_max_age_days: float = 90.0
    url_summary_ttl_days: float = 30.0


@dataclass
class RetentionResult:
    notifications: int
    dead_letters: int
    page_crawls: int
    url_summaries: int


@dataclass
class PruneParams:
    target: str
    cutoff: datetime


def schedules(settings: Settings) -> list[JobSchedule]:
    return [
        JobSchedule(
            schedule_id="retention",
            workflow="Retention",
            arg=RetentionInput(
                notification_max_age_days=settings.notification_retention_days,
                dead_letter_max_age_days=settings.dead_letter_retention_days,
                page_crawl_max_age_days=settings.page_crawl_retention_days,
                url_summary_ttl_days=settings.url_summary_ttl_days,
            ),
            description="Delete old notifications, dead letters, crawl records; expire summaries",
            cron="30 3 * * *",
            execution_timeout=timedelta(hours=2),
            catchup_window=timedelta(days=1),
        ),
    ]


class RetentionActivities(ActivityInterfaces):
    """The activities as workflows call them (`activities/retention.py` implements each)."""

    prune_expired_rows: Activity[PruneParams, int]
    """Delete the target's rows older than `cutoff`, batch after batch, each its own transaction
    with the running count and position, so a retry resumes after the last committed batch and
    reports the exact count. Repeating it deletes nothing more."""
