"""Learning statistics jobs: learn-stats-daily and learn-stats-weekly.

Calendar dates are derived from the scheduled time in SCHEDULE_TIMEZONE by the activities,
which hold the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from learning_platform.jobs.contracts import Activity, ActivityInterfaces, JobSchedule

if TYPE_CHECKING:
    from learning_platform.core.settings import Settings


@dataclass
class LearnStatsDailyInput:
    # None: the schedule's scheduled time (TemporalScheduledStartTime), else workflow time.
    scheduled_time: datetime | None = None


@dataclass
class LearnStatsDailyResult:
    # ISO dates (YYYY-MM-DD): Temporal's JSON converter handles datetime but not date.
    yesterday: str
    reset_streaks: int


@dataclass
class LearnStatsWeeklyInput:
    scheduled_time: datetime | None = None


@dataclass
class LearnStatsWeeklyResult:
    week_start: str
    corrected_users: int


@dataclass
class LearnStatsJobParams:
    scheduled_time: datetime


def schedules(settings: Settings) -> list[JobSchedule]:
    return [
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
    ]


class LearnStatsActivities(ActivityInterfaces):
    """The activities as workflows call them (`activities/learn_stats.py` implements each)."""

    reset_broken_streaks: Activity[LearnStatsJobParams, LearnStatsDailyResult]

    recalculate_learn_stats: Activity[LearnStatsJobParams, LearnStatsWeeklyResult]
