"""The daily retention job: rows past their age are deleted in bounded batches."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

PRUNE_EXPIRED_ROWS = "prune_expired_rows"

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
