"""Learning statistics jobs: learn-stats-daily and learn-stats-weekly.

Calendar dates are derived from the scheduled time in SCHEDULE_TIMEZONE by the activities,
which hold the settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import activity

from learning_platform.jobs.contracts import RUNS_ON_THE_WORKER


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


# The activities, as workflows call them (`activities/learn_stats.py` implements each).


@activity.defn
async def reset_broken_streaks(params: LearnStatsJobParams) -> LearnStatsDailyResult:
    raise NotImplementedError(RUNS_ON_THE_WORKER)


@activity.defn
async def recalculate_learn_stats(params: LearnStatsJobParams) -> LearnStatsWeeklyResult:
    raise NotImplementedError(RUNS_ON_THE_WORKER)
