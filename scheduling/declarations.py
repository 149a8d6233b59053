"""The declared schedules: the job table of DESIGN.md, as code. Add a job's schedule here."""

from __future__ import annotations

from datetime import timedelta

from contracts.browsing_sessions import CleanupStaleSessionsInput, UpdateMetricsInput
from learning_platform.settings import Settings
from scheduling.job_schedule import JobSchedule


def declared_schedules(settings: Settings) -> list[JobSchedule]:
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
            execution_timeout=timedelta(minutes=1),
            catchup_window=timedelta(minutes=1),
        ),
    ]
