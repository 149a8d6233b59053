"""The declared schedules: the job table of DESIGN.md, as code. Add a job's schedule here."""

from __future__ import annotations

from datetime import timedelta

from learning_platform.core.settings import Settings
from learning_platform.jobs.ai_processing.contracts import AiProcessingInput
from learning_platform.jobs.browsing_sessions.contracts import (
    CleanupStaleSessionsInput,
    UpdateMetricsInput,
)
from learning_platform.jobs.learn_stats.contracts import LearnStatsDailyInput, LearnStatsWeeklyInput
from learning_platform.jobs.outbox_relay.contracts import EnsureOutboxRelayInput
from learning_platform.jobs.question_sets.contracts import (
    QuestionSetCleanupInput,
    QuestionSetRetryInput,
    SourceCleanupInput,
)
from learning_platform.jobs.retention.contracts import RetentionInput
from learning_platform.scheduling.job_schedule import JobSchedule

# `make dev` triggers it at start, so the relay does not wait for its first tick.
RELAY_WATCHDOG_SCHEDULE_ID = "outbox-relay"


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
        JobSchedule(
            schedule_id="question-set-cleanup",
            workflow="QuestionSetCleanup",
            arg=QuestionSetCleanupInput(max_pending_minutes=settings.stale_question_set_minutes),
            description="Question sets pending for over 60 min become failed (generation timeout)",
            every=timedelta(minutes=10),
            execution_timeout=timedelta(minutes=10),
            catchup_window=timedelta(minutes=10),
        ),
        JobSchedule(
            schedule_id="question-set-retry",
            workflow="QuestionSetRetry",
            arg=QuestionSetRetryInput(batch_size=settings.question_set_retry_batch_size),
            description="Failed question sets with retries left get a new generation attempt",
            every=timedelta(minutes=5),
            execution_timeout=timedelta(minutes=5),
            catchup_window=timedelta(minutes=5),
        ),
        JobSchedule(
            schedule_id="source-cleanup",
            workflow="SourceCleanup",
            arg=SourceCleanupInput(),
            description="Sources marked for deletion and used by no question set: object, then row",
            cron="0 4 * * *",
            execution_timeout=timedelta(hours=2),
            catchup_window=timedelta(days=1),
        ),
        JobSchedule(
            schedule_id=RELAY_WATCHDOG_SCHEDULE_ID,
            workflow="EnsureOutboxRelay",
            arg=EnsureOutboxRelayInput(),
            description="Watchdog: start the singleton outbox relay workflow if it is not running",
            every=timedelta(minutes=1),
            execution_timeout=timedelta(minutes=1),
            catchup_window=timedelta(minutes=1),
        ),
        JobSchedule(
            schedule_id="learn-stats-daily",
            workflow="LearnStatsDaily",
            arg=LearnStatsDailyInput(),
            description="Reset the current streak of users with no learning yesterday",
            cron="0 0 * * *",
            execution_timeout=timedelta(hours=2),
            catchup_window=timedelta(days=3),
        ),
        JobSchedule(
            schedule_id="learn-stats-weekly",
            workflow="LearnStatsWeekly",
            arg=LearnStatsWeeklyInput(),
            description="Reset weekly counters; recalculate cumulative stats from the records",
            cron="0 4 * * 1",
            execution_timeout=timedelta(hours=4),
            catchup_window=timedelta(days=6),
        ),
        JobSchedule(
            schedule_id="ai-processing",
            workflow="AiProcessing",
            arg=AiProcessingInput(batch_size=settings.ai_sweep_batch_size),
            description="Each processing session gets its own workflow: crawl, summarise, mind map",
            every=timedelta(minutes=5),
            execution_timeout=timedelta(minutes=5),
            catchup_window=timedelta(minutes=5),
        ),
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
