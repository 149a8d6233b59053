"""Browsing-session jobs: cleanup-stale-sessions and update-metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from learning_platform.jobs.contracts import (
    Activity,
    ActivityInterfaces,
    JobSchedule,
    NoInputActivity,
)

if TYPE_CHECKING:
    from learning_platform.core.settings import Settings

ACTIVE_SESSIONS_GAUGE = "mindhit_sessions_active"


@dataclass
class CleanupStaleSessionsInput:
    # None: the schedule's scheduled time (TemporalScheduledStartTime), else workflow time.
    scheduled_time: datetime | None = None
    max_age_hours: float = 24.0


@dataclass
class CleanupStaleSessionsResult:
    failed_sessions: int
    cutoff: datetime


@dataclass
class FailStaleSessionsParams:
    cutoff: datetime
    reason: str


@dataclass
class UpdateMetricsInput:
    scheduled_time: datetime | None = None


@dataclass
class UpdateMetricsResult:
    active_sessions: int


def schedules(settings: Settings) -> list[JobSchedule]:
    return [
        JobSchedule(
            schedule_id="cleanup-stale-sessions",
            workflow="CleanupStaleSessions",
            arg=CleanupStaleSessionsInput(max_age_hours=settings.stale_session_age_hours),
            description="Sessions recording/paused with no update for 24 h become failed",
            cron="0 * * * *",
            execution_timeout=timedelta(minutes=30),
            catchup_window=timedelta(hours=2),
        ),
        JobSchedule(
            schedule_id="update-metrics",
            workflow="UpdateMetrics",
            arg=UpdateMetricsInput(),
            description="Count recording+paused sessions into the mindhit_sessions_active gauge",
            every=timedelta(minutes=1),
        ),
    ]


class BrowsingSessionActivities(ActivityInterfaces):
    """The activities as workflows call them (`activities/browsing_sessions.py` implements each)."""

    fail_stale_sessions: Activity[FailStaleSessionsParams, int]
    """Batch after batch, each its own short transaction, per active status."""

    record_active_sessions: NoInputActivity[int]
