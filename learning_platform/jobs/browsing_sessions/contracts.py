"""Browsing-session jobs: cleanup-stale-sessions and update-metrics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

FAIL_STALE_SESSIONS = "fail_stale_sessions"
RECORD_ACTIVE_SESSIONS = "record_active_sessions"

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
